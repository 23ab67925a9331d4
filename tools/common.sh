# Shared by the tools/ scripts (sourced, not run).

# Copy the source tree to $1 without build products, so a build there starts
# from nothing, as it would on a fresh machine.
clean_copy() {
    local root dest=$1
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    mkdir -p "$dest"
    (cd "$root" && tar --exclude=./build --exclude=./dist --exclude='./.venv*' \
        --exclude='*.so' --exclude='*.pyd' --exclude='*.egg-info' --exclude=.git \
        --exclude='src/zerosock/*.c' --exclude=src/zerosock/_build.json -cf - .) | tar -xf - -C "$dest"
}
