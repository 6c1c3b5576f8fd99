"""Per-layer weight robustness of a .tflite model (float32 or int8), without TensorFlow: perturb one weighted
layer at a time, re-measure accuracy on an evaluation set, rank the layers.

One concern per module; each imports only the ones above it in this list (and `masklite`):
    errors.py    RobustnessError, the message meant for the user
    surgery.py   the .tflite flatbuffer: weighted layers, their weights, a copy with one tensor replaced
    split.py     the model cut before one op, so a perturbation re-runs only what comes after it
    perturb.py   multiply / add / noise / bit flips on one layer's weights, seeded per cell
    spec.py      GridSpec: what a grid runs (validated; also the POST /v1/robustness body)
    ranking.py   layers ranked by sensitivity; the original study's conclusions checked
    grid.py      run_grid: every layer x every perturbation, serially or in a process pool
    charts.py    the heatmaps (matplotlib, optional)
    outputs.py   grid.csv, ranking.csv, grid.json + the heatmaps
    evaluate.py  one grid from a spec and the card's model; `run_job`, the service's robustness job
    console.py   the progress bar and the summary the CLI prints
    report.py    reports/robustness.md
    cli.py       `python -m robustness run | layers | report`
"""
