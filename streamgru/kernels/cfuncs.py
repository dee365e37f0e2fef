"""C functions compiled by numba into streamgru's disk cache, or only loaded.

``CachedCFunc(fn, signature)`` is numba's ``cfunc`` (a function with a C
signature and an address) with the kernels' cache (cache.py) and a
``load`` that never compiles, so a caller can prefer a variant that is
already on disk.
"""

from numba.core import sigutils
from numba.core.ccallback import CFunc
from numba.core.compiler_lock import global_compiler_lock

from .cache import attach
from .config import FAST_FLAGS, JIT_OPTIONS, compiling


class CachedCFunc(CFunc):
    """A cfunc of ``fn`` for ``signature``, cached with the kernels."""

    def __init__(self, fn, signature, fastmath=False) -> None:
        options = {"error_model": JIT_OPTIONS["error_model"]}
        if fastmath:
            options["fastmath"] = FAST_FLAGS
        super().__init__(fn, sigutils.normalize_signature(signature), locals={}, options=options)
        attach(self)

    @global_compiler_lock
    def load(self) -> bool:
        """Load from the disk cache, never compiling: False if it is not there."""
        cres = self._cache.load_overload(self._sig, self._targetdescr.target_context)
        if cres is None:
            return False
        self._library = cres.library
        self._wrapper_name = cres.fndesc.llvm_cfunc_wrapper_name
        self._wrapper_address = self._library.get_pointer_to_function(self._wrapper_name)
        return True

    def ready(self) -> "CachedCFunc":
        """Loaded from the disk cache, else compiled (and cached); returns self."""
        if not self.load():
            with compiling():
                self.compile()
        return self
