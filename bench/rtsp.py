"""A real RTSP server on loopback, for the stream tests and the stream benchmark: ffmpeg encodes a video
file in real time (`-re`, looped) to RTP/H.264, and this small server hands that RTP to RTSP clients over
TCP (RFC 2326 interleaved), the way IP cameras are usually read.

Why not `ffmpeg -rtsp_flags listen`: that makes ffmpeg an RTSP server that *receives* a published stream
(ANNOUNCE/RECORD); a reader that asks to PLAY, as OpenCV's FFmpeg backend and every camera client do, is
refused. Debian's gstreamer1.0-rtsp would do it, but is not installed here and has no Python binding in
the project's environment. So ffmpeg does the encoding and the RTP packets (real ones, with its own SDP,
which carries the H.264 parameter sets as cameras' do), and this module only speaks the RTSP handshake:
OPTIONS, DESCRIBE, SETUP (TCP interleaved only; UDP is answered 461 and clients fall back), PLAY,
TEARDOWN.

    with RtspServer(Path("clip.mp4"), fps=10) as server:
        server.url   # rtsp://127.0.0.1:<port>/stream
"""

from __future__ import annotations

import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

CRLF = "\r\n"


class RtspServer:
    def __init__(self, video: Path, fps: float = 10.0, loop: bool = True):
        self.video = Path(video)
        self.fps = fps
        self.loop = loop
        self._tmp = tempfile.TemporaryDirectory(prefix="masklite-rtsp-")
        self._rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._rtp.bind(("127.0.0.1", 0))
        self._rtp.settimeout(0.5)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(4)
        self._listener.settimeout(0.5)
        self.port = self._listener.getsockname()[1]
        self.url = f"rtsp://127.0.0.1:{self.port}/stream"
        self._players: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._ffmpeg: subprocess.Popen[bytes] | None = None
        self.packets_sent = 0

    # ------------------------------------------------------------ lifetime

    def start(self) -> RtspServer:
        sdp = Path(self._tmp.name) / "stream.sdp"
        rtp_port = self._rtp.getsockname()[1]
        cmd = [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-re",
            *(["-stream_loop", "-1"] if self.loop else []), "-i", str(self.video), "-an",
            "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-pix_fmt", "yuv420p",
            "-r", f"{self.fps:g}", "-g", str(max(1, round(self.fps))), "-flags", "+global_header",
            "-f", "rtp", "-sdp_file", str(sdp), f"rtp://127.0.0.1:{rtp_port}?pkt_size=1200",
        ]  # fmt: skip
        self._ffmpeg = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while not (sdp.is_file() and "m=video" in sdp.read_text()):
            if self._ffmpeg.poll() is not None or time.monotonic() > deadline:
                err = self._ffmpeg.stderr.read().decode(errors="replace") if self._ffmpeg.stderr else ""
                raise RuntimeError(f"ffmpeg did not start the RTP stream: {err[-400:]}")
            time.sleep(0.05)
        self.sdp = self._session_sdp(sdp.read_text())
        for target in (self._relay, self._accept):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._ffmpeg is not None and self._ffmpeg.poll() is None:
            self._ffmpeg.terminate()
            try:
                self._ffmpeg.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._ffmpeg.kill()
        for thread in self._threads:
            thread.join(timeout=5)
        with self._lock:
            for player in self._players:
                player.close()
            self._players.clear()
        self._listener.close()
        self._rtp.close()
        self._tmp.cleanup()

    def __enter__(self) -> RtspServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ RTP fan-out

    def _relay(self) -> None:
        while not self._stop.is_set():
            try:
                packet = self._rtp.recv(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            frame = b"$\x00" + len(packet).to_bytes(2, "big") + packet  # interleaved channel 0
            with self._lock:
                for player in list(self._players):
                    try:
                        player.sendall(frame)
                    except OSError:
                        self._players.remove(player)
                self.packets_sent += 1

    # ------------------------------------------------------------ RTSP

    def _session_sdp(self, sdp: str) -> str:
        lines = [line for line in sdp.splitlines() if line and not line.startswith("a=control")]
        lines = [line.replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0") for line in lines]
        return CRLF.join([*lines, "a=control:track0"]) + CRLF

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        conn.settimeout(1.0)
        try:
            while not self._stop.is_set():
                try:
                    chunk = conn.recv(4096)
                except TimeoutError:
                    continue
                if not chunk:
                    return
                buffer += chunk
                while b"\r\n\r\n" in buffer:
                    head, buffer = buffer.split(b"\r\n\r\n", 1)
                    if head.startswith(b"$"):  # RTCP from the client, interleaved: ignore
                        continue
                    if not self._answer(conn, head.decode("latin-1")):
                        return
        except OSError:
            return
        finally:
            with self._lock:
                if conn in self._players:
                    self._players.remove(conn)
            conn.close()

    def _answer(self, conn: socket.socket, request: str) -> bool:
        lines = request.split("\r\n")
        method = lines[0].split(" ", 1)[0].upper()
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        cseq = headers.get("cseq", "0")
        extra: dict[str, str] = {}
        body = ""
        status = "200 OK"
        if method == "OPTIONS":
            extra["Public"] = "OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN"
        elif method == "DESCRIBE":
            extra["Content-Base"] = self.url + "/"
            extra["Content-Type"] = "application/sdp"
            body = self.sdp
        elif method == "SETUP":
            if "TCP" not in headers.get("transport", "").upper():
                status = "461 Unsupported Transport"
            else:
                extra["Transport"] = "RTP/AVP/TCP;unicast;interleaved=0-1"
                extra["Session"] = "12345678;timeout=60"
        elif method == "PLAY":
            extra["Session"] = "12345678"
            extra["Range"] = "npt=now-"
        elif method == "TEARDOWN":
            self._send(conn, "200 OK", cseq, {"Session": "12345678"}, "")
            return False
        else:
            status = "405 Method Not Allowed"
        self._send(conn, status, cseq, extra, body)
        if method == "PLAY":
            with self._lock:
                self._players.append(conn)
        return True

    def _send(self, conn: socket.socket, status: str, cseq: str, extra: dict[str, str], body: str) -> None:
        head = [f"RTSP/1.0 {status}", f"CSeq: {cseq}", *(f"{k}: {v}" for k, v in extra.items())]
        if body:
            head.append(f"Content-Length: {len(body.encode())}")
        payload = (CRLF.join(head) + CRLF + CRLF + body).encode()
        with self._lock:  # never in the middle of an interleaved RTP frame
            conn.sendall(payload)
