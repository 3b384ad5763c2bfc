"""numba's typed ``List``, with its methods cached on disk like the engine's own kernels.

numba compiles a typed list's methods (append, getitem, ...) once per item type in every process, and never caches
them: the engine and its twin hold about ten kinds of array lists, so each process that built one spent ~15 s of
CPU compiling them (every CLI call, sweep worker and test worker). Cached, a later process loads them in ~0.1 s.
"""

from numba.core.registry import CPUDispatcher
from numba.typed import List, typedlist

for _name in dir(typedlist):
    _f = getattr(typedlist, _name)
    if isinstance(_f, CPUDispatcher):
        _f.enable_caching()

__all__ = ["List"]
