"""Import TensorFlow and Keras without their start-up log noise on the terminal."""
from __future__ import annotations

import os
import sys
import tempfile

_loaded = None


def import_tf(verbose: bool = False):
    """Return ``(tensorflow, keras)``, importing them on first use.

    TensorFlow's C++ start-up messages ignore ``TF_CPP_MIN_LOG_LEVEL`` in
    recent releases, so unless ``verbose`` is set, file descriptor 2 is sent to
    a temporary file during the import; if the import fails, what it printed is
    replayed so nothing is hidden.
    """
    global _loaded
    if _loaded is not None:
        return _loaded
    if verbose:
        import keras
        import tensorflow as tf
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        with tempfile.TemporaryFile() as sink:
            sys.stderr.flush()
            saved = os.dup(2)
            os.dup2(sink.fileno(), 2)
            try:
                import keras
                import tensorflow as tf
                tf.get_logger().setLevel("ERROR")
                tf.constant(0)  # device discovery logs happen here
            except BaseException:
                os.dup2(saved, 2)
                sink.seek(0)
                sys.stderr.write(sink.read().decode(errors="replace"))
                raise
            finally:
                os.dup2(saved, 2)
                os.close(saved)
    _loaded = (tf, keras)
    return _loaded
