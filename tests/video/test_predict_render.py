"""The image extras on /v1/predict against a real server: render=jpeg / Accept: image/jpeg (the picture
with the faces drawn, by masklite.draw as in the video path), blur, landmarks and the per-label summary."""

from __future__ import annotations

import io

import httpx
import numpy as np
from PIL import Image

from masklite.draw import blur_faces
from tests.conftest import SceneSample


def post(http: httpx.Client, sample: SceneSample, **kwargs: object) -> httpx.Response:
    return http.post("/v1/predict", files={"file": (sample.path.name, sample.data)}, **kwargs)  # type: ignore[arg-type]


def biggest(scene_samples: list[SceneSample]) -> SceneSample:
    return max(scene_samples, key=lambda s: min((min(f.box[2:]) for f in s.faces), default=0))


def test_json_has_landmarks_and_a_summary(client: httpx.Client, scene_samples: list[SceneSample]) -> None:
    body = post(client, biggest(scene_samples)).json()
    assert body["faces"]
    assert body["summary"] == {
        label: sum(f["label"] == label for f in body["faces"])
        for label in {f["label"] for f in body["faces"]}
    }
    for face in body["faces"]:
        x, y, w, h = face["box"]
        assert len(face["landmarks"]) == 5
        for px, py in face["landmarks"]:  # eyes, nose, mouth corners: inside the face box (a little slack)
            assert x - 0.1 * w <= px <= x + 1.1 * w and y - 0.1 * h <= py <= y + 1.1 * h
        (rex, rey), (lex, ley), _, (rmx, rmy), _ = face["landmarks"]
        assert rex < lex and max(rey, ley) < max(
            rmy, rmy
        )  # the right eye on the image's left; eyes above the mouth
    no_detect = post(client, biggest(scene_samples), params={"detect_faces": "false"}).json()
    assert no_detect["faces"][0]["landmarks"] == []


def test_render_jpeg_draws_the_faces_and_accept_asks_the_same(
    client: httpx.Client, scene_samples: list[SceneSample]
) -> None:
    sample = biggest(scene_samples)
    faces = post(client, sample).json()["faces"]
    rendered = post(client, sample, params={"render": "jpeg"})
    assert rendered.status_code == 200 and rendered.headers["content-type"] == "image/jpeg"
    picture = np.asarray(Image.open(io.BytesIO(rendered.content)).convert("RGB")).astype(int)
    original = np.asarray(Image.open(sample.path).convert("RGB")).astype(int)
    assert picture.shape == original.shape  # full size, upright: the boxes fit
    for face in faces:
        x, y, w, h = face["box"]
        edge = picture[y, x : x + w]  # the box's top edge is drawn: far from the photo there
        assert np.abs(edge - original[y, x : x + w]).mean() > 40
    counts = dict(part.split("=") for part in rendered.headers["x-masklite-faces"].split(","))
    assert sum(map(int, counts.values())) == len(faces)
    by_accept = post(client, sample, headers={"Accept": "image/jpeg"})
    assert by_accept.headers["content-type"] == "image/jpeg" and by_accept.content == rendered.content
    json_first = post(client, sample, headers={"Accept": "application/json, image/jpeg"})
    assert json_first.headers["content-type"].startswith("application/json")
    forced_json = post(client, sample, params={"render": "json"}, headers={"Accept": "image/jpeg"})
    assert forced_json.headers["content-type"].startswith("application/json")


def test_blur_pixelates_every_face(client: httpx.Client, scene_samples: list[SceneSample]) -> None:
    sample = biggest(scene_samples)
    faces = post(client, sample).json()["faces"]
    plain = np.asarray(Image.open(io.BytesIO(post(client, sample, params={"render": "jpeg"}).content)))
    blurred_r = post(client, sample, params={"render": "jpeg", "blur": "true"})
    blurred = np.asarray(Image.open(io.BytesIO(blurred_r.content))).astype(int)
    # what the pixelation must look like: the core's blur_faces on the original photo
    expected = blur_faces(np.array(Image.open(sample.path).convert("RGB")), [tuple(f["box"]) for f in faces])
    expected = expected.astype(int)
    for face in faces:
        x, y, w, h = face["box"]
        inner = (slice(y + h // 4, y + 3 * h // 4), slice(x + w // 4, x + 3 * w // 4))
        blurred_error = np.abs(blurred[inner] - expected[inner]).mean()  # JPEG noise only
        plain_error = np.abs(plain[inner].astype(int) - expected[inner]).mean()  # the face's own detail
        assert blurred_error < 0.5 * plain_error, (face["box"], blurred_error, plain_error)
