"""edgekws: train once, deploy many — slimmable keyword-spotting supernets for edge devices.

Kept import-light on purpose: `edgekws --help` must not pay for torch or TensorFlow.
"""

__version__ = "0.1.0"
