"""Deprecated alias, kept for one release: `python -m training.micro_tflm model.tflite` is now
`python -m training.micro.tflm model.tflite` (training/micro/tflm.py)."""

from training.micro.tflm import main

if __name__ == "__main__":
    main()
