"""The kernels' Numba cache is keyed by the kernel modules as a whole (edgelearn/fixed/numba_cache.py)."""
from __future__ import annotations

import numba

from edgelearn.fixed import numba_cache


def test_the_key_follows_every_kernel_module_and_only_them(tmp_path):
    (tmp_path / "kern_a.py").write_text("import numba\n@numba.njit(cache=True)\ndef f(x):\n    return x + 1\n")
    (tmp_path / "kern_b.py").write_text("from numba import njit\n@njit(cache=True)\ndef g(x):\n    return x\n")
    (tmp_path / "plain.py").write_text("def h():\n    return 1\n")
    key = numba_cache.sources_key(tmp_path)
    (tmp_path / "plain.py").write_text("def h():\n    return 2\n")
    assert numba_cache.sources_key(tmp_path) == key              # a module without kernels: same cache
    (tmp_path / "kern_b.py").write_text("from numba import njit\n@njit(cache=True)\ndef g(x):\n    return x * 2\n")
    assert numba_cache.sources_key(tmp_path) != key              # another kernel's file changed: a fresh cache
    assert numba_cache.cache_dir(tmp_path).parent == tmp_path / "__pycache__"


def test_the_engine_compiles_into_the_keyed_folder_unless_the_user_names_one(monkeypatch):
    import os

    import edgelearn.fixed  # noqa: F401  (configures the cache on import)

    ours = str(numba_cache.cache_dir())
    if os.environ.get("NUMBA_CACHE_DIR") in (None, "", ours):  # (a user's own folder wins, also over this test)
        assert numba.config.CACHE_DIR == ours
        # Numba re-reads its configuration from the environment at the next compilation once any NUMBA_* variable
        # changed; the keyed folder must survive that (it lives in the environment, not only in numba.config)
        monkeypatch.setenv("NUMBA_OPT", "2" if os.environ.get("NUMBA_OPT") != "2" else "3")
        numba.njit(lambda x: x + 1)(1)
        assert numba.config.CACHE_DIR == ours
    monkeypatch.setenv("NUMBA_CACHE_DIR", "/somewhere/else")
    assert numba_cache.configure() is None
