"""Typed errors of the export tool; the CLI turns each into one line and exit status 2."""

from __future__ import annotations


class ExportError(Exception):
    """Base class: something about the inputs of an export is wrong (not a bug in the tool)."""


class InvalidOnnxError(ExportError):
    """A given ONNX file cannot be parsed, fails the checker, or lacks the expected inputs/outputs."""


class Fp16RangeError(ExportError):
    """A weight that would be converted to float16 lies outside its finite range (it would be clipped)."""


class CalibrationError(ExportError):
    """No usable calibration images (empty directory, unreadable files)."""


class InputSizeError(ExportError):
    """--input-size is malformed or not a multiple of the tokenizer's factor."""
