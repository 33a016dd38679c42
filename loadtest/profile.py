"""py-spy profiles of the processes serving a bench figure's load (`python -m loadtest bench --profile DIR`,
`make profile`): `py-spy record` samples each server process while the load runs and writes its stacks in
the collapsed format (`<label>-<pid>.txt`, which speedscope and flamegraph.pl open), then the frames that
bound the figure are summed into `<label>.top.txt`: by own time (the frame on top of the stack) and by
total time (the frame anywhere in it), as shares of the samples. Optional: py-spy needs ptrace rights on
the server processes, so CI never runs it."""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final

sample_rate_per_s: Final = 100
stop_timeout_s: Final = 30.0
top_frames_max: Final = 25
own_frame_marker: Final = "jubao_server/"


class ProfilerMissing(RuntimeError):
    """py-spy is not installed (`pip install py-spy`)."""


@dataclasses.dataclass(frozen=True)
class Profiles:
    """Where a bench run leaves its profiles; one per measured load, named after its figure."""

    folder: Path

    @contextlib.contextmanager
    def recording(self, label: str, pids: Sequence[int]) -> Iterator[None]:
        """Sample `pids` while the block runs; then summarise their stacks into `<label>.top.txt`."""
        py_spy = shutil.which("py-spy")
        if py_spy is None:
            raise ProfilerMissing("py-spy is not on PATH: pip install py-spy")
        self.folder.mkdir(parents=True, exist_ok=True)
        outputs = [self.folder / f"{label}-{pid}.txt" for pid in pids]
        options = ["--rate", str(sample_rate_per_s), "--format", "raw", "--nonblocking"]
        recorders = [
            subprocess.Popen(
                [py_spy, "record", "--pid", str(pid), *options, "--output", str(output)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for pid, output in zip(pids, outputs, strict=True)
        ]
        try:
            yield
        finally:
            for recorder in recorders:
                recorder.send_signal(signal.SIGINT)
            for recorder in recorders:
                recorder.wait(stop_timeout_s)
        stacks = Counter[str]()
        for output in outputs:
            if output.exists():
                stacks.update(collapsed(output.read_text()))
        (self.folder / f"{label}.top.txt").write_text(top_frames(stacks))


def collapsed(text: str) -> Counter[str]:
    """Stacks of py-spy's raw format (`frame;frame;... count` per line, outermost first) with their
    sample counts."""
    stacks = Counter[str]()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks[stack] += int(count)
    return stacks


def top_frames(stacks: Counter[str], frames_max: int = top_frames_max) -> str:
    """The frames with the most samples, by own time and by total time (jubao's own frames: the event
    loop's and the threads' frames hold every sample), as shares of every sample."""
    own = Counter[str]()
    total = Counter[str]()
    for stack, count in stacks.items():
        frames = stack.split(";")
        own[frames[-1]] += count
        for frame in set(frames):
            if own_frame_marker in frame:
                total[frame] += count
    samples = sum(stacks.values()) or 1
    lines = [f"{sum(stacks.values())} samples"]
    for title, counts in (("own time", own), ("total time, jubao's frames", total)):
        lines += ["", f"by {title}:"]
        lines += [f"{100 * n / samples:6.1f}%  {frame}" for frame, n in counts.most_common(frames_max)]
    return "\n".join(lines) + "\n"
