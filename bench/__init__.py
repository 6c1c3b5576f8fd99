"""Benchmarks: `python -m bench` (in-process + HTTP + load), the load generator, the CI client.

images.py     the standard image set (scenes + a 640x480 target JPEG cut from one)
inprocess.py  in-process classifier/pipeline/scenes benchmark -> JSON-able dict
httpbench.py  in-process vs HTTP round trip on the same image
loadgen.py    bounded, loopback-only concurrent /v1/predict clients
server.py     start a real `python -m service` on a free port
report.py     printed tables and the PNG chart
ci.py         the CI client: POST /v1/benchmark, ratio checks, benchmarks/history.jsonl
"""
