"""masklite core: the pieces that training and the service share (no TensorFlow, no web framework).

One definition of each thing:
    card.py        the model card (labels, preprocessing, files, metrics) and its sha256 checks
    image.py       bytes -> RGB uint8 array (EXIF, grey, RGBA, palette, 16-bit; bomb check before decode)
    faces.py       YuNet, the one face detector, over an engine (LiteRT / onnxruntime / OpenCV);
                   load_detector, the one loader; the face crop
    classifier.py  crop -> model input exactly as the card says (`preprocess`), and a LiteRT interpreter
                   around one .tflite file (float32, int8, micro)
    pipeline.py    image bytes or a frame -> faces -> labels (predict_image, predict_frame), with one
                   PredictOptions in and one ImageResult out
"""

import importlib.util

__version__ = "0.1.0"


def charts_available() -> bool:
    """matplotlib (the optional extra `charts`) draws the PNG charts; the lean serving install has none,
    so job results then come without PNGs (the numbers are all in their JSON/CSV)."""
    return importlib.util.find_spec("matplotlib") is not None
