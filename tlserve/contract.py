"""The model repository contract: the one definition of what ``training/`` writes and ``service/`` reads.

``models/<name>/<version>/`` in TF Serving's layout (DESIGN.md, "Contract"): the folder and file names, the rules for
model names and version folders, and the signature, input and output names of a tlserve export. Both halves import
this module and neither imports the other, so it must stay dependency-free: the standard library only (no numpy, no
TensorFlow, nothing from ``service/`` or ``training/``); ``tests/test_contract.py`` checks that.
"""

from __future__ import annotations

import re
from types import MappingProxyType

# --- files of a version folder (paths relative to models/<name>/<version>/, "/"-separated) -------------------------
SAVED_MODEL_FILE = "saved_model.pb"
SAVED_MODEL_TEXT_FILE = "saved_model.pbtxt"  # the text form, which TF also loads; tlserve writes the binary one
VARIABLES_DIR = "variables"
VARIABLES_INDEX_FILE = "variables.index"  # inside VARIABLES_DIR, next to the variables.data-XXXXX-of-NNNNN shards
LABELS_FILE = "assets/labels.txt"  # one class name per line, in score order: the one source of the labels
METADATA_FILE = "assets.extra/metadata.json"
WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"  # TF Serving's warm-up records (PredictionLog TFRecords)
REPORT_DIR = "assets.extra/report"  # the evaluation report: report.json, report.md, report.html, PNGs

# --- model names -----------------------------------------------------------------------------------------------
# A model name becomes a directory name and a URL path segment, so it must not be able to climb out of either
# (no '/', no leading '.'); 255 characters is the longest file name most file systems take. Version labels
# follow the same rule.
MAX_NAME_LENGTH = 255
_NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_.-]{{0,{MAX_NAME_LENGTH - 1}}}")


def valid_model_name(name: str) -> bool:
    """True when ``name`` can be a model name (one safe path segment, not hidden, at most 255 characters)."""
    return _NAME.fullmatch(name) is not None


# --- version folders -------------------------------------------------------------------------------------------
# A version folder is named by a non-negative integer, possibly with leading zeros (TF Serving's own test models use
# 00000123); keep the path as found, never rebuild it from the number. ASCII digits only: str.isdigit() is also
# True for '²' (which int() refuses) and '١٢' (which int() reads as 12), and TF Serving takes neither as a version.
# Hidden folders (a half-written export, '.tmp-3-ab12') are never versions.
MAX_VERSION = 2**63 - 1  # versions are int64 in TF Serving's protos
_VERSION_NAME = re.compile(r"[0-9]+")


def is_version_name(name: str) -> bool:
    """True when ``name`` is spelt as a version folder: one or more ASCII digits (the number may still be too big)."""
    return _VERSION_NAME.fullmatch(name) is not None


def parse_version(name: str) -> int | None:
    """The version number a folder named ``name`` stands for, or None when it is not a version folder.

    ``'7'`` and ``'007'`` give 7; ``'²'``, ``'١٢'``, ``'-1'``, ``'+1'``, ``'1.5'``, ``' 1'``, ``''``, hidden names
    and numbers beyond int64 give None.
    """
    if not is_version_name(name):
        return None
    number = int(name)
    return number if number <= MAX_VERSION else None


def version_name_order(name: str) -> tuple[int, str]:
    """Sort key of folder names: when two folders mean one number ('7' and '007'), the first in this order (the
    shortest name, then the smallest string) is that version; the others are ignored."""
    return len(name), name


# --- signatures of a tlserve export ----------------------------------------------------------------------------
DEFAULT_SIGNATURE = "serving_default"  # encoded images (tf.string [None]) -> scores, classes
PIXELS_SIGNATURE = "pixels"  # uint8 [None, H, W, 3] at the model's input size -> scores, classes
PREPROCESS_SIGNATURE = "preprocess"  # one encoded image (tf.string []) -> pixels uint8 [H, W, 3]
CLASSIFY_SIGNATURE = "classify"  # serialized tf.Example with EXAMPLE_IMAGE_KEY -> scores, classes

IMAGES_INPUT = "images"  # of DEFAULT_SIGNATURE
PIXELS_INPUT = "pixels"  # of PIXELS_SIGNATURE
IMAGE_INPUT = "image"  # of PREPROCESS_SIGNATURE
EXAMPLES_INPUT = "inputs"  # of CLASSIFY_SIGNATURE (TF Serving's name for a classify signature's input)
EXAMPLE_IMAGE_KEY = "image/encoded"  # the tf.Example feature holding the encoded image

SIGNATURE_INPUTS = MappingProxyType({DEFAULT_SIGNATURE: IMAGES_INPUT, PIXELS_SIGNATURE: PIXELS_INPUT,
                                     PREPROCESS_SIGNATURE: IMAGE_INPUT, CLASSIFY_SIGNATURE: EXAMPLES_INPUT})

SCORES_OUTPUT = "scores"  # float32 [None, C], in LABELS_FILE order
CLASSES_OUTPUT = "classes"  # string [None, C]: the class names, the same in every row
PREPROCESS_OUTPUT = "pixels"  # of PREPROCESS_SIGNATURE: what PIXELS_SIGNATURE takes

# A SavedModel with both of these is served as a tlserve image export (decode per image, batch the pixels).
IMAGE_MODEL_SIGNATURES = (PREPROCESS_SIGNATURE, PIXELS_SIGNATURE)
