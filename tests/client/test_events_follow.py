"""`jubao payments events` follows the stream across breaks: it reopens from the last cursor."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from jubao.cli.payments import events_failures_in_a_row_max, follow_events
from jubao.errors import InvalidArgument, Reason, Unavailable
from jubao.payments.v1 import payments_pb2 as pb


def _response(cursor: str, events: int = 1) -> pb.WatchEventsResponse:
    return pb.WatchEventsResponse(cursor=cursor, events=[pb.Event(event_id=cursor)] * events)


class ScriptedStreams:
    """Each call to `watch` plays the next script: responses, then an error or the stream's end."""

    def __init__(self, *scripts: tuple[list[pb.WatchEventsResponse], Exception | None]) -> None:
        self.scripts = list(scripts)
        self.requests: list[pb.WatchEventsRequest] = []

    def watch(self, request: pb.WatchEventsRequest) -> Iterator[pb.WatchEventsResponse]:
        self.requests.append(request)
        responses, error = self.scripts.pop(0)
        yield from responses
        if error is not None:
            raise error


def _broken() -> Unavailable:
    return Unavailable("server restarting", reason=Reason.DRAINING)


def test_a_broken_or_ended_stream_is_reopened_from_the_last_cursor() -> None:
    streams = ScriptedStreams(
        ([_response("c1"), _response("c2")], _broken()),
        ([], _broken()),
        ([_response("c3")], None),
        ([_response("c4", events=2), _response("c5")], None),
    )
    shown: list[str] = []
    sleeps: list[float] = []
    request = pb.WatchEventsRequest(account_id="alice", from_oldest=True)
    cursor = follow_events(streams.watch, request, 5, lambda r: shown.append(r.cursor), sleeps.append)
    assert (cursor, shown) == ("c4", ["c1", "c2", "c3", "c4"])
    assert [r.cursor for r in streams.requests] == ["", "c2", "c2", "c3"]
    assert all(r.account_id == "alice" for r in streams.requests)
    assert len(sleeps) == 2 and sleeps[1] > sleeps[0]


def test_it_gives_up_after_failures_in_a_row_and_on_other_errors() -> None:
    failing = ScriptedStreams(*[([], _broken())] * (events_failures_in_a_row_max + 1))
    with pytest.raises(Unavailable):
        follow_events(failing.watch, pb.WatchEventsRequest(), 0, lambda r: None, lambda s: None)
    assert len(failing.requests) == events_failures_in_a_row_max + 1
    refused = ScriptedStreams(([], InvalidArgument("bad cursor", reason=Reason.INVALID_ARGUMENT)))
    with pytest.raises(InvalidArgument):
        follow_events(refused.watch, pb.WatchEventsRequest(), 0, lambda r: None, lambda s: None)
    assert len(refused.requests) == 1
