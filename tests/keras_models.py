"""Keras models for the Keras reader tests, built and saved by Keras itself.

Keras is imported lazily, with the torch backend (never TensorFlow), so that
collecting the other tests does not import it.
"""

import contextlib
import os

import numpy as np

T = 1000  # steps streamed in every parity test


def keras():
    os.environ["KERAS_BACKEND"] = "torch"
    import keras as k

    assert k.backend.backend() == "torch"
    return k


@contextlib.contextmanager
def floatx(dtype):
    """Keras computing in ``dtype``. For float64 this also lifts a rule of
    Keras 3's type promotion: outside the TensorFlow backend it rounds every
    op's float64 result type down to float32 (as JAX does without x64), so a
    float64 Dense would multiply in float32. With the TensorFlow backend's
    rule instead, Keras computes in float64 throughout."""
    k = keras()
    from keras.src.backend.common import dtypes

    old, old_policy = k.config.floatx(), k.config.dtype_policy()
    old_rule = dtypes.BIT64_TO_BIT32_DTYPE["float64"]
    # the global dtype policy is cached from floatx on first use: set both
    k.config.set_floatx(np.dtype(dtype).name)
    k.config.set_dtype_policy(np.dtype(dtype).name)
    dtypes.BIT64_TO_BIT32_DTYPE["float64"] = np.dtype(dtype).name
    try:
        yield k
    finally:
        k.config.set_floatx(old)
        k.config.set_dtype_policy(old_policy)
        dtypes.BIT64_TO_BIT32_DTYPE["float64"] = old_rule


def randomise(model, seed=0, scale=0.5):
    """Replace every weight (biases too: zeros would hide a swapped bias) by
    normal noise, in the weight's own dtype."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, scale, w.shape).astype(w.dtype) for w in model.get_weights()])
    return model


def forward(model, X):
    """Keras's own forward pass over one sequence X (T, I) -> (T, O) or (O,)."""
    # Keras casts the input to floatx when the model is called: call it in X's dtype
    with floatx(X.dtype) as k:
        return k.ops.convert_to_numpy(model(X[None], training=False))[0]


# name -> (input size, function(keras, many_to_one) -> model). With
# many_to_one=False a model that returns only its last step is built with
# return_sequences=True instead: its per-step outputs are the many-to-one
# model's answers for every prefix.
def _gru(k, last):
    return k.Sequential([k.Input((None, 3)), k.layers.GRU(8, return_sequences=True),
                         k.layers.Dense(3, activation="softmax")])


def _gru_reset_before(k, last):
    return k.Sequential([k.Input((None, 3)), k.layers.GRU(8, reset_after=False,
                                                          return_sequences=True),
                         k.layers.Dense(2)])


def _lstm(k, last):
    return k.Sequential([k.Input((None, 4)), k.layers.LSTM(6, return_sequences=True),
                         k.layers.Dense(2, activation="tanh")])


def _simple_rnn(k, last):
    return k.Sequential([k.Input((None, 2)), k.layers.SimpleRNN(5, return_sequences=True),
                         k.layers.Softmax(), k.layers.Dense(3, activation="sigmoid")])


def _stack(k, last):
    return k.Sequential([
        k.Input((None, 3)),
        k.layers.GRU(6, return_sequences=True, recurrent_activation="hard_sigmoid"),
        k.layers.LSTM(5, return_sequences=True, recurrent_activation="hard_sigmoid"),
        k.layers.SimpleRNN(4, return_sequences=True),
        k.layers.Dense(3, activation="softmax"),
    ])


def _functional(k, last):
    x = k.Input((None, 3))
    y = k.layers.Masking(mask_value=-99.0)(x)
    y = k.layers.GaussianNoise(0.3)(y)
    y = k.layers.GRU(7, return_sequences=True, use_bias=False, activation="relu",
                     recurrent_activation="hard_sigmoid")(y)
    y = k.layers.Dropout(0.5)(y)
    y = k.layers.TimeDistributed(k.layers.Dense(4, activation="elu"))(y)
    y = k.layers.LeakyReLU(negative_slope=0.1)(y)
    y = k.layers.Dense(5, use_bias=False)(y)
    y = k.layers.Activation("gelu")(y)
    y = k.layers.SimpleRNN(4, return_sequences=True, activation="relu")(y)
    y = k.layers.Dense(3, activation="leaky_relu")(y)
    y = k.layers.Dense(2, activation="log_softmax")(y)
    return k.Model(x, y)


def _many_to_one(k, last):
    return k.Sequential([k.Input((None, 3)), k.layers.GRU(6, return_sequences=True),
                         k.layers.LSTM(5, return_sequences=not last),
                         k.layers.Dense(4, activation="relu"),
                         k.layers.Dense(3, activation="softmax")])


MODELS = {
    "gru": _gru,
    "gru_reset_after_false": _gru_reset_before,
    "lstm": _lstm,
    "simple_rnn": _simple_rnn,
    "stack_hard_sigmoid": _stack,
    "functional_chain": _functional,
    "many_to_one": _many_to_one,
}


def build(name, dtype=np.float32, seed=0, last=True):
    with floatx(dtype) as k:
        return randomise(MODELS[name](k, last), seed)


def save_all(model, folder, name):
    """The model written by Keras as .keras and as legacy .h5."""
    paths = {}
    for suffix in (".keras", ".h5"):
        p = os.path.join(str(folder), name + suffix)
        model.save(p)
        paths[suffix] = p
    return paths
