"""Count the project files whose functions run for one POST /v1/predict (after warm-up)."""
import sys, threading, pathlib, os
ROOT = pathlib.Path.cwd().resolve()
from fastapi.testclient import TestClient
from service.app import create_app
img = pathlib.Path(sys.argv[1]).read_bytes()
app = create_app()
seen = set()
ON = [False]
def prof(frame, event, arg):
    if ON[0] and event == "call":
        f = frame.f_code.co_filename
        if f.startswith(str(ROOT)) and "/.venv/" not in f:
            seen.add(os.path.relpath(f, ROOT))
sys.setprofile(prof); threading.setprofile(prof)
with TestClient(app) as c:
    import time
    for _ in range(50):
        if c.get("/health/ready").status_code == 200: break
        time.sleep(0.2)
    r = c.post("/v1/predict", files={"file": ("a.jpg", img, "image/jpeg")}); assert r.status_code == 200, r.text
    ON[0] = True
    r = c.post("/v1/predict", files={"file": ("a.jpg", img, "image/jpeg")})
    ON[0] = False
    assert r.status_code == 200, r.text
print(len(seen)); print("\n".join(sorted(seen)))
