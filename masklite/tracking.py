"""People over time: a face tracker (supervision's ByteTrack) and one label per person by a vote.

    tracker = make_tracker(fps=analysed_fps)
    ids = tracker.update(boxes, scores)            one id per box (None: not confirmed yet)
    votes = PersonVotes(min_votes=3)
    votes.add(track_id, label, t_s) ... votes.people()   -> [Person(id, label, votes, first_s, last_s)]

ByteTrack rather than Norfair. `python -m bench.video` runs both, with the same settings, on pan/zoom clips
of the held-out scenes (bench/clips.py; 4 clips, 22 people): at stride 1 they gave the same answer (20
counted, 21 found, 0 ID switches, 19 labels right); at stride 3 Norfair found one person more (21 vs 20,
1 ID switch each). Too close to choose on; what decides is that Norfair 2.3 pins numpy<2 and rich<15, so
it cannot be installed beside this project's lock at all, and supervision 0.30 can (extra `video`; 0.31
dropped ByteTrack). supervision is imported here only, when a tracker is made.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from masklite.card import UNKNOWN_LABEL

Box = tuple[int, int, int, int]

# a face lost for this long is a new person when it comes back (a door, a queue: people do not return
# within a second, and a longer memory merges two people who pass the same spot)
LOST_AFTER_S = 1.0
# a person's label needs this many judged frames; fewer stay `unknown`
DEFAULT_MIN_VOTES = 3


class Tracker(Protocol):
    name: str

    def update(self, boxes: Sequence[Box], scores: Sequence[float]) -> list[int | None]: ...


class TrackerUnavailable(RuntimeError):
    """The video extra (supervision) is not installed."""


class ByteTracker:
    """supervision's ByteTrack behind one small method. Boxes in, one track id per box out."""

    name = "bytetrack"

    def __init__(self, fps: float, lost_after_s: float = LOST_AFTER_S, match_iou: float = 0.2):
        try:
            import supervision as sv
        except ImportError as exc:
            raise TrackerUnavailable(
                "video needs the tracker: pip install 'masklite[video]' (supervision)"
            ) from exc
        self._sv = sv
        with warnings.catch_warnings():  # sv.ByteTrack is deprecated in favour of a new package that
            warnings.simplefilter("ignore")  # needs opencv-python (clashes with our headless build)
            # lost_track_buffer counts frames at 30 fps; ByteTrack scales it by frame_rate / 30.
            # minimum_matching_threshold is a cost (1 - IoU): 0.8 accepts matches down to IoU 0.2,
            # which a face moving across a pan at a low analysed frame rate still reaches
            self._tracker = sv.ByteTrack(
                track_activation_threshold=0.5,
                lost_track_buffer=max(1, round(30 * lost_after_s)),
                minimum_matching_threshold=1.0 - match_iou,
                frame_rate=max(fps, 1.0),
                minimum_consecutive_frames=1,
            )

    def update(self, boxes: Sequence[Box], scores: Sequence[float]) -> list[int | None]:
        xyxy = np.array([(x, y, x + w, y + h) for x, y, w, h in boxes], dtype=np.float32).reshape(-1, 4)
        detections = self._sv.Detections(
            xyxy=xyxy,
            confidence=np.asarray(scores, dtype=np.float32).reshape(-1),
            class_id=np.zeros(len(boxes), dtype=int),
            data={"index": np.arange(len(boxes))},
        )
        tracked = self._tracker.update_with_detections(detections)
        ids: list[int | None] = [None] * len(boxes)
        if len(tracked) == 0:  # no confirmed track: ByteTrack answers an empty Detections without data
            return ids
        for index, track_id in zip(tracked.data["index"], tracked.tracker_id, strict=True):
            ids[int(index)] = int(track_id)
        return ids


def make_tracker(fps: float) -> Tracker:
    """The tracker the video path uses; `fps`: analysed frames per second of video (fps / stride)."""
    return ByteTracker(fps)


@dataclass
class Person:
    id: int
    label: str
    votes: dict[str, int]
    first_s: float
    last_s: float

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "label": self.label,
            "votes": dict(self.votes),
            "first_s": round(self.first_s, 3),
            "last_s": round(self.last_s, 3),
        }


@dataclass
class _Tally:
    first_s: float
    last_s: float
    counts: Counter[str] = field(default_factory=Counter)


class PersonVotes:
    """Each track's per-frame labels; a person's label is the majority of its judged frames (`unknown`
    frames, too small to judge, do not vote). Fewer than `min_votes` judged frames: `unknown`."""

    def __init__(self, min_votes: int = DEFAULT_MIN_VOTES):
        self.min_votes = min_votes
        self._tallies: dict[int, _Tally] = {}

    def add(self, track_id: int, label: str, t_s: float) -> None:
        tally = self._tallies.get(track_id)
        if tally is None:
            tally = self._tallies[track_id] = _Tally(t_s, t_s)
        tally.last_s = t_s
        if label != UNKNOWN_LABEL:
            tally.counts[label] += 1

    def label(self, track_id: int) -> str:
        tally = self._tallies.get(track_id)
        return UNKNOWN_LABEL if tally is None else self._decide(tally)

    def _decide(self, tally: _Tally) -> str:
        if sum(tally.counts.values()) < self.min_votes:
            return UNKNOWN_LABEL
        ranked = tally.counts.most_common()
        if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
            return UNKNOWN_LABEL  # a tie is not a decision
        return ranked[0][0]

    def people(self) -> list[Person]:
        return [
            Person(track_id, self._decide(t), dict(t.counts), t.first_s, t.last_s)
            for track_id, t in sorted(self._tallies.items())
        ]
