"""TensorFlow without its start-up noise: the one place metdata imports it.

On a machine without a GPU, TensorFlow's C++ layer writes lines that read like failures before
Python's logging or ``TF_CPP_MIN_LOG_LEVEL`` can stop them (``Could not find cuda drivers``,
``failed call to cuInit: ... UNKNOWN ERROR (303)``, the ``absl::InitializeLog`` notice, oneDNN
and CPU-instruction notices). ``tensorflow()`` imports it and initialises its devices with the
process's stderr (file descriptor 2) sent to a temporary file, then writes back every line that
is not one of those known notices: real warnings and errors stay visible.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from types import ModuleType

#: Start-up lines that say nothing a user must act on.
NOISE = re.compile(
    r"All log messages before absl::InitializeLog|Could not find cuda drivers|failed call to cuInit|"
    r"cpu_feature_guard|This TensorFlow binary is optimized|To enable the following instructions|"
    r"oneDNN custom operations are on|rebuild TensorFlow with the appropriate compiler flags|"
    r"Unable to register cu(DNN|FFT|BLAS) factory|computation placer already registered|"
    r"TF-TRT Warning: Could not find TensorRT"
)


def kept_lines(text: str) -> list[str]:
    """The lines of captured start-up output that are not known noise.

    >>> kept_lines("I0000 cudart_stub.cc:31] Could not find cuda drivers on your machine\\nreal problem\\n")
    ['real problem']
    """
    return [line for line in text.splitlines() if line.strip() and not NOISE.search(line)]


def tensorflow() -> ModuleType:
    """``import tensorflow`` with its devices initialised, start-up noise filtered out (see the module doc)."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # INFO and WARNING lines of TensorFlow's C++ logging
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # the CUDA probe writes its lines now, not at the first op
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in kept_lines(captured.read().decode(errors="replace")):
                print(line, file=sys.stderr)
    return tf
