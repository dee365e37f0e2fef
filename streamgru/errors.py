"""Exception classes of streamgru.

Every error the library raises on purpose is one of these, so a caller can
catch ``StreamGRUError`` (or the ``ValueError`` it also is) and know the
stream and the files involved were left untouched.
"""


class StreamGRUError(Exception):
    """Base class of every error streamgru raises on purpose."""


class WeightsError(StreamGRUError, ValueError):
    """Weights that are unreadable, corrupt, unsupported or mis-shaped.

    The message names the file and the tensor where they are known.
    """


class UnsafeWeightsError(WeightsError):
    """A pickled weight file asked for code outside the allow-list."""


class InputError(StreamGRUError, ValueError):
    """Bad input to ``step``, ``process`` or ``set_state``.

    When this is raised the stream's state is exactly what it was before the
    call.
    """
