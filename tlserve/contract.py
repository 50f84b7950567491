"""The model repository contract: the one definition of what ``training/`` writes and ``service/`` reads.

``models/<name>/<version>/`` in TF Serving's layout (DESIGN.md, "Contract"): the folder and file names, the rules for
model names and version folders, and the signature, input and output names of a tlserve export. Both halves import
this module and neither imports the other, so it must stay dependency-free: the standard library only (no numpy, no
TensorFlow, nothing from ``service/`` or ``training/``); ``tests/test_contract.py`` checks that.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from types import MappingProxyType
from urllib.parse import urlsplit

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


# --- publishing a version ------------------------------------------------------------------------------------
# A version is written under a hidden staging name (never a version folder, so a server ignores it), then given its
# final name. Object stores have no rename: the files are copied to the final name one by one, the graph file last,
# so a server (which waits for the graph file and every variables shard, see service/repository/discovery.py) sees
# the version only once every other file is in place.
STAGING_PREFIX = ".tmp-"


def staging_name(version: int, token: str) -> str:
    """The hidden folder name a version is written under before it gets its number: ``.tmp-3-ab12cd34``."""
    return f"{STAGING_PREFIX}{version}-{token}"


def publish_order(paths: Iterable[str]) -> list[str]:
    """The relative ``/``-separated file paths of a version in the order to publish them: the graph file last."""
    graphs = (SAVED_MODEL_FILE, SAVED_MODEL_TEXT_FILE)
    return sorted(paths, key=lambda p: (p in graphs, p))


# --- object stores ---------------------------------------------------------------------------------------------
# A model repository, a model's base path or an export destination may be an object-store URL instead of a local
# folder: ``s3://bucket/prefix`` (s3fs) or ``gs://bucket/prefix`` (gcsfs; ``gcs://`` is its alias). Credentials
# never go in the URL: each library takes them from its standard chain (environment, web identity, metadata server).
STORE_SCHEMES = ("s3", "gs", "gcs")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9._-]{1,221}[a-z0-9]")  # S3's and GCS's bucket names, lower case


class StoreUrlError(ValueError):
    """An object-store URL that cannot be used; the message says why and how to write it."""


def is_url(location: str | object) -> bool:
    """True when ``location`` is written as a URL (``scheme://...``) rather than a local path."""
    return isinstance(location, str) and "://" in location


def split_store_url(url: str) -> tuple[str, str, str]:
    """``(scheme, bucket, prefix)`` of ``s3://bucket/some/prefix/`` (prefix without its end slashes).

    Raises ``StoreUrlError`` for another scheme, a missing or invalid bucket, credentials in the URL, a query or a
    fragment, and for ``.``/``..`` path segments (a prefix cannot climb out of itself).
    """
    if not is_url(url):
        raise StoreUrlError(f"{url!r} is not a URL; write s3://bucket/prefix or gs://bucket/prefix")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in STORE_SCHEMES:
        raise StoreUrlError(f"{scheme}:// is not supported; use a local folder, s3://bucket/prefix or "
                            "gs://bucket/prefix")
    if "@" in parts.netloc:
        raise StoreUrlError(f"{scheme}:// URLs must not hold credentials; set them in the environment (AWS_* "
                            "variables, GOOGLE_APPLICATION_CREDENTIALS) or use a service account")
    if parts.query or parts.fragment:
        raise StoreUrlError(f"{scheme}://{parts.netloc}{parts.path}: remove the '?' or '#' part of the URL")
    if not _BUCKET.fullmatch(parts.netloc):
        raise StoreUrlError(f"{scheme}://{parts.netloc[:100]}: not a valid bucket name (at least 3 lower-case "
                            "letters, digits, '.', '-' or '_'); write s3://bucket/prefix")
    segments = [s for s in parts.path.split("/") if s]
    if any(s in (".", "..") for s in segments):
        raise StoreUrlError(f"{scheme}://{parts.netloc}{parts.path}: '.' and '..' are not allowed in the prefix")
    return scheme, parts.netloc, "/".join(segments)


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

# --- trust: calibrated scores, an open-set "unknown" score, explanations (issue 16) ---------------------------------
# Every export from this version on: ``scores`` of every image signature are calibrated (softmax of logits divided by
# the fitted temperature; the argmax is that of the uncalibrated model). Exports from earlier versions have none of
# what follows: a reader treats each name as optional, and its absence is never an error.

# An additional output of DEFAULT_SIGNATURE, PIXELS_SIGNATURE and CLASSIFY_SIGNATURE (beside SCORES_OUTPUT and
# CLASSES_OUTPUT, which keep their names): float32 [None], one per image, higher = less like the training classes.
# An image is "confident" when its score is at most METADATA_UNKNOWN's UNKNOWN_THRESHOLD (see ``is_confident``).
UNKNOWN_SCORE_OUTPUT = "unknown_score"

# Grad-CAM of a class on the backbone's last convolutional feature map.
EXPLAIN_SIGNATURE = "explain"  # images tf.string [None] + class_index int32 [None] -> heatmap, class_index, score
EXPLAIN_PIXELS_SIGNATURE = "explain_pixels"  # pixels uint8 [None, H, W, 3] + class_index -> the same outputs
CLASS_INDEX_INPUT = "class_index"  # int32 [None]: the class to explain per image; EXPLAIN_TOP_CLASS = its top class
EXPLAIN_TOP_CLASS = -1
HEATMAP_OUTPUT = "heatmap"  # float32 [None, H, W] at the model's input size, values in [0, 1] (1 at the peak)
EXPLAINED_CLASS_OUTPUT = "class_index"  # int32 [None]: the class explained (the top class where -1 was asked)
EXPLAINED_SCORE_OUTPUT = "score"  # float32 [None]: the calibrated score of that class
EXPLAIN_SIGNATURE_INPUTS = MappingProxyType({EXPLAIN_SIGNATURE: (IMAGES_INPUT, CLASS_INDEX_INPUT),
                                             EXPLAIN_PIXELS_SIGNATURE: (PIXELS_INPUT, CLASS_INDEX_INPUT)})

# Keys of METADATA_FILE (a JSON object).
METADATA_CALIBRATION = "calibration"  # object with the keys below; absent: scores are not calibrated
CALIBRATION_TEMPERATURE = "temperature"  # float > 0: scores = softmax(logits / temperature)
CALIBRATION_ECE_BEFORE = "ece_before"  # expected calibration error (15 equal-width bins) on the test split
CALIBRATION_ECE_AFTER = "ece_after"
CALIBRATION_NLL_BEFORE = "nll_before"  # mean negative log-likelihood on the test split
CALIBRATION_NLL_AFTER = "nll_after"
CALIBRATION_ECE_FLOOR = "ece_floor"  # the ECE sampling alone gives the calibrated test scores (absent before)
METADATA_UNKNOWN = "unknown"  # object with the keys below; absent: no UNKNOWN_SCORE_OUTPUT, every image is confident
UNKNOWN_METHOD = "score"  # which score UNKNOWN_SCORE_OUTPUT is: one of UNKNOWN_METHODS
UNKNOWN_THRESHOLD = "threshold"  # float: unknown_score > threshold -> not confident
UNKNOWN_FALSE_REJECTION_TARGET = "false_rejection_target"  # the rate of known images rejected it was fitted for
UNKNOWN_OUTPUT = "output"  # the output name (UNKNOWN_SCORE_OUTPUT)
UNKNOWN_METHODS = ("msp", "energy", "mahalanobis")  # 1 - max calibrated softmax; -logsumexp(logits); Gaussian distance


def is_confident(unknown_score: float | None, unknown: dict | None) -> bool:
    """Whether an image with ``unknown_score`` counts as one of the model's classes, given the metadata's
    METADATA_UNKNOWN object ``unknown``. Without either (an export from before issue 16), True: never an error."""
    if unknown_score is None or not unknown or UNKNOWN_THRESHOLD not in unknown:
        return True
    return float(unknown_score) <= float(unknown[UNKNOWN_THRESHOLD])

# The reference of the drift metrics (issue 17): what the export predicted on its own test split, the distribution a
# live window of predictions is compared with. Absent from exports before issue 17: the server then has no drift.
METADATA_REFERENCE = "reference"  # object with the keys below
REFERENCE_IMAGES = "images"  # int: test images it was measured on
REFERENCE_CLASS_FREQUENCIES = "class_frequencies"  # floats [C], sum 1: the top-1 *predicted* class of each image
REFERENCE_LABEL_FREQUENCIES = "label_frequencies"  # floats [C], sum 1: the true labels (shown, never compared)
REFERENCE_SCORE_HISTOGRAM = "score_histogram"  # floats [SCORE_BINS], sum 1: the top-1 score in SCORE_BINS bins
# Ten equal-width bins of the top-1 score over [0, 1]: PSI's rules of thumb (< 0.1 stable, > 0.2 shifted) were made
# for about ten bins, and with ten the sampling noise of a window of n against a reference of m, about
# (bins - 1) * (1/n + 1/m), stays near 0.03 for n = 1000 and m = 450 (more bins would raise it to alarm levels).
SCORE_BINS = 10


def score_bin(score: float) -> int:
    """The bin (0 .. SCORE_BINS - 1) of a top-1 score in [0, 1]: [0, 0.1), [0.1, 0.2), ... [0.9, 1.0]; anything
    out of range (or NaN) goes to the nearest end, so a bad score never raises."""
    if not score > 0.0:  # also NaN
        return 0
    return min(int(score * SCORE_BINS), SCORE_BINS - 1)
