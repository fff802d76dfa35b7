"""Both places the training loop runs answer the `Session` protocol it is typed against."""

import inspect

from draw_service.train.on_ray import RaySession
from draw_service.train.session import LocalSession, Session

MEMBERS = [name for name in vars(Session) if not name.startswith("_")]


def test_the_protocol_names_what_the_loop_asks_of_a_session():
    import draw_service.train.loop as loop

    source = inspect.getsource(loop)
    asked = {m for m in ("rank", "world_size", "device", "run_dir", "node", "last_checkpoint", "restore", "prepare",
                            "report", "preempted")
             if f"session.{m}" in source}
    assert asked == set(MEMBERS) | set(Session.__annotations__)


def test_local_and_ray_sessions_have_every_method_with_the_protocols_parameters():
    for cls in (LocalSession, RaySession):
        for name in MEMBERS:
            ours, theirs = inspect.signature(getattr(Session, name)), inspect.signature(getattr(cls, name))
            assert list(ours.parameters) == list(theirs.parameters), (cls.__name__, name)


def test_a_local_session_holds_every_attribute_the_loop_reads(tmp_path):
    session = LocalSession(str(tmp_path / "run"), "cpu")
    for name in Session.__annotations__:
        assert hasattr(session, name), name
    assert session.run_dir.uri == str(tmp_path / "run") and session.world_size == 1
