"""The shipped demo: a GRU trained on smartwatch exercise recordings, and the
held-out recordings it was not trained on (see weights/README.md).

``WATCH_GRU`` is the model in streamgru's native format (the same weights as
``weights/watch_gru.pt`` and ``weights/watch_gru.onnx`` in the repository);
``WATCH_TEST`` is an ``.npz`` with ``samples`` (T, 6) float32 raw
accelerometer + gyroscope values at 50 Hz, ``labels`` (T,) and
``recording_ids`` (T,) int64, and the ``classes`` and ``channels`` names.
Both are installed with the package, so they work from any directory.

>>> import numpy as np, streamgru as sg
>>> from streamgru.data import WATCH_GRU, WATCH_TEST
>>> model = sg.load(WATCH_GRU)
>>> (model.input_size, model.output_size, model.state_size)
(6, 7, 48)
>>> with np.load(WATCH_TEST) as z:
...     z["samples"].shape, [str(c) for c in z["classes"]]
((77198, 6), ['PEN', 'ABD', 'FEL', 'IR', 'ER', 'TRAP', 'ROW'])
"""

import os

__all__ = ["WATCH_GRU", "WATCH_TEST"]

_HERE = os.path.dirname(os.path.abspath(__file__))

WATCH_GRU: str = os.path.join(_HERE, "watch_gru.npz")
WATCH_TEST: str = os.path.join(_HERE, "watch_test.npz")
