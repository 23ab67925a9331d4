"""zerosock.aio uses no deprecated asyncio API: importing it, ``run()``,
``new_event_loop()`` and the loop-factory ways of running it are clean under
``-W error`` on every supported Python, on both backends.  ``install()`` is the
policy mechanism itself: from 3.14 the standard library warns about it.
"""

import asyncio
import os
import subprocess
import sys
import textwrap
import warnings

import pytest

CLEAN_USES = """
    import asyncio, sys
    import zerosock.aio

    async def main():
        await asyncio.sleep(0)
        return type(asyncio.get_running_loop()).__module__

    expected = type(zerosock.aio.new_event_loop()).__module__
    assert zerosock.aio.run(main()) == expected
    assert zerosock.aio.run(main(), debug=True) == expected
    loop = zerosock.aio.new_event_loop()
    assert loop.run_until_complete(main()) == expected
    loop.close()
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=zerosock.aio.new_event_loop) as runner:
            assert runner.run(main()) == expected
    if sys.version_info >= (3, 12):
        assert asyncio.run(main(), loop_factory=zerosock.aio.new_event_loop) == expected
    print("clean")
"""


def run_clean(code, backend_name, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZEROSOCK_", "PYTHONWARN"))}
    if backend_name == "python":
        env["ZEROSOCK_PURE_PYTHON"] = "1"
    return subprocess.run([sys.executable, "-W", "error", *args, "-c", textwrap.dedent(code)],
                          env=env, capture_output=True, text=True, timeout=120)


def test_import_run_and_loop_factories_warn_nothing(zs):
    out = run_clean(CLEAN_USES, zs.BACKEND)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "clean"


@pytest.mark.parametrize("worker, framework", [("UvicornWorker", "uvicorn"),
                                               ("GunicornWebWorker", "aiohttp")])
def test_the_gunicorn_workers_import_without_warnings(zs, worker, framework):
    pytest.importorskip("gunicorn")
    pytest.importorskip(framework)
    out = run_clean(f"import zerosock.workers; zerosock.workers.{worker}", zs.BACKEND)
    assert out.returncode == 0, out.stderr


def test_install_makes_zerosock_loops_and_says_what_the_stdlib_says(zs):
    # The policy is the mechanism install() is; the stdlib deprecates it in 3.14.
    code = """
        import asyncio, sys, warnings
        import zerosock.aio

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            zerosock.aio.install()
            loop = asyncio.new_event_loop()
        kinds = {w.category.__name__ for w in caught}
        assert isinstance(loop, zerosock.aio.EventLoop), type(loop)
        loop.close()
        deprecated = [str(w.message) for w in caught if w.category is DeprecationWarning]
        if sys.version_info >= (3, 14):
            assert deprecated and all("set_event_loop_policy" in m for m in deprecated), deprecated
        else:
            assert not caught, [str(w.message) for w in caught]
        print("ok")
    """
    out = run_clean(code, zs.BACKEND)
    assert out.returncode == 0, out.stderr


def test_the_policy_class_is_the_platform_default(zs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        default = asyncio.DefaultEventLoopPolicy
    assert issubclass(zs.aio.EventLoopPolicy, default)
    policy = zs.aio.EventLoopPolicy()
    loop = policy.new_event_loop()
    try:
        assert isinstance(loop, zs.aio.EventLoop)
    finally:
        loop.close()


@pytest.mark.skipif(sys.version_info < (3, 12), reason="loop_factory is 3.12+")
def test_get_event_loop_outside_a_loop_is_the_stdlibs_answer(zs):
    # No loop made behind the caller's back: from 3.14 get_event_loop()
    # raises outside a running loop, as on stock asyncio; before, it warns.
    code = """
        import asyncio, sys, warnings
        import zerosock.aio

        async def main():
            return asyncio.get_event_loop() is asyncio.get_running_loop()

        assert asyncio.run(main(), loop_factory=zerosock.aio.new_event_loop)
        if sys.version_info >= (3, 14):
            try:
                asyncio.get_event_loop()
            except RuntimeError as exc:
                assert "no current event loop" in str(exc).lower(), exc
            else:
                raise AssertionError("no RuntimeError")
        print("ok")
    """
    out = run_clean(code, zs.BACKEND)
    assert out.returncode == 0, out.stderr
