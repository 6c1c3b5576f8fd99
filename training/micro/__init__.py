"""`python -m training micro`: the microcontroller-class model (issue #9), after the main model's build.

Stages (`--stage`, default all, each reads the previous one's work files under <work>/micro):
  data     face crops at the micro sizes, replaying the main pipeline's views (data.py)
  teacher  the main model's soft labels on every train view, cached once (data.py)
  train    each variant from scratch, with and without distillation -> <work>/micro/runs/<run>/ (runs.py)
  ship     pick a run by measurements, verify it in TFLM, write models/masklite_micro_int8.tflite,
           the card entry models.micro (ship.py), reports/micro.md and micro_accuracy_vs_size.png (report.py)

The files, in the order they build on each other: entry.py (the card entry's file, key, budgets and
carry-over rule; the main export uses it too), net.py (the network), tflm.py (TensorFlow Lite Micro
checks), data.py, runs.py, report.py, ship.py, cli.py (the command's options and stages).

Why from scratch: the only ImageNet weights here are MobileNetV2 alpha 1.0, too big for a microcontroller.
Distillation: loss = (1 - a) * CE(labels) + a * T^2 * KL(teacher_T || student_T), teacher = the main
model's Keras form (frozen alpha-1.0 backbone + dense head), logits cached per train view.
"""
