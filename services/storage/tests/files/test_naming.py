import uuid

import pytest

from comfyserve.storage.errors import InvalidArgument
from comfyserve.storage.files.naming import (
    attachment_disposition,
    input_key,
    job_output_prefix,
    key_segment,
    normalise_content_type,
    output_key,
    safe_filename,
)
from comfyserve.storage.settings import DEFAULT_CONTENT_TYPES


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("cat.png", "cat.png"),
        ("uploads/2024/cat.png", "cat.png"),
        ("C:\\Users\\me\\cat.png", "cat.png"),
        ("/etc/cat.png", "cat.png"),
        ("  spaced name.png ", "spaced name.png"),
        ("a..b.png", "a..b.png"),
        ("photo #1?.png", "photo _1_.png"),
        ('say "hi".txt', "say _hi_.txt"),
        ("café.png", "café.png"),
    ],
)
def test_safe_filename_keeps_a_safe_basename(raw: str, expected: str) -> None:
    assert safe_filename(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "dir/",
        ".",
        "..",
        "../secret.png",
        "a/../../b.png",
        "..\\b.png",
        "bad\nname.png",
        "nul\x00.png",
        "bidi\u202e.png",
        "x" * 201,
    ],
)
def test_safe_filename_refuses(raw: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        safe_filename(raw)
    assert caught.value.field == "filename"


def test_safe_filename_accepts_exactly_the_length_limit() -> None:
    assert safe_filename("x" * 196 + ".png") == "x" * 196 + ".png"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("image/png", "image/png"),
        ("IMAGE/PNG", "image/png"),
        ("text/plain; charset=utf-8", "text/plain"),
    ],
)
def test_content_type_is_normalised(raw: str, expected: str) -> None:
    assert normalise_content_type(raw, DEFAULT_CONTENT_TYPES) == expected


@pytest.mark.parametrize("raw", ["text/html", "", "png", "image/svg+xml"])
def test_content_type_outside_the_list_is_refused(raw: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        normalise_content_type(raw, DEFAULT_CONTENT_TYPES)
    assert caught.value.field == "content_type"
    assert str(caught.value).startswith("content_type: ")


@pytest.mark.parametrize("value", ["9", "12:3", "job-1.a", "0f3c_x"])
def test_key_segment_accepts_ids(value: str) -> None:
    assert key_segment("node_id", value) == value


@pytest.mark.parametrize("value", ["", ".", "..", "a/b", "-lead", "x" * 129, "a b"])
def test_key_segment_refuses_anything_that_could_leave_its_folder(value: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        key_segment("node_id", value)
    assert caught.value.field == "node_id"


def test_keys_follow_the_layout() -> None:
    file_id = uuid.UUID("00000000-0000-4000-8000-000000000001")
    assert input_key("t1", file_id, "cat.png") == (
        "inputs/t1/00000000-0000-4000-8000-000000000001/cat.png"
    )
    assert output_key("t1", "job9", 2, "12:3", 0, "out.png") == (
        "outputs/t1/job9/2/12:3/0-out.png"
    )
    assert output_key("t1", "job9", 2, "12:3", 0, "out.png").startswith(
        job_output_prefix("t1", "job9")
    )
    assert not output_key("t1", "job90", 1, "9", 0, "out.png").startswith(
        job_output_prefix("t1", "job9")
    )


def test_disposition_carries_ascii_fallback_and_exact_name() -> None:
    assert attachment_disposition("cat.png") == (
        "attachment; filename=\"cat.png\"; filename*=UTF-8''cat.png"
    )
    assert attachment_disposition("café 1.png") == (
        "attachment; filename=\"caf_ 1.png\"; filename*=UTF-8''caf%C3%A9%201.png"
    )
