"""The comparison benchmark: ``python -m zerosock.bench`` measures zerosock
against the libraries it replaces, side by side, on this machine."""
