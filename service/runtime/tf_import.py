"""TensorFlow imported for serving, without the Keras that ``import tensorflow`` loads eagerly.

TensorFlow's ``__init__`` ends by importing ``keras.src.optimizers`` (so that Keras's registrations run at import)
inside a ``try`` that passes on ``ImportError``. Keras 3's package loads its whole API with it, and with that
scikit-learn and matplotlib when they are installed (its scikit-learn wrappers, its plotting). Here that was
1.1 s of a 3.4-3.8 s ``import tensorflow`` (2.3-2.5 s without), paid by every cold start.

Serving never uses Keras: it loads SavedModels with ``tf.saved_model.load`` or a session and calls their
signatures, as TF Serving, which has no Keras at all, does. So each serving process's entry point calls
``import_tensorflow()`` before anything imports TensorFlow. For that one import ``keras.src.optimizers`` reads as
absent: a ``None`` in ``sys.modules`` ends an import before its parent packages load. The mark is removed
afterwards, so a later ``import keras`` (``tf.keras``, training in the same interpreter) loads Keras as usual.
"""

from __future__ import annotations

import sys
from types import ModuleType

_EAGER_KERAS = "keras.src.optimizers"  # what tensorflow/__init__.py imports "eagerly" (TF 2.16 to 2.21 at least)


def import_tensorflow() -> ModuleType:
    """``tensorflow``, imported now without Keras unless something imported it (or Keras) before."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    mark = _EAGER_KERAS not in sys.modules
    if mark:
        sys.modules[_EAGER_KERAS] = None  # type: ignore[assignment]
    try:
        import tensorflow
    finally:
        if mark and _EAGER_KERAS in sys.modules and sys.modules[_EAGER_KERAS] is None:
            del sys.modules[_EAGER_KERAS]
    return tensorflow
