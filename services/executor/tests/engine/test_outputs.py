import pytest

from comfyserve.executor.engine.events import OutputKind
from comfyserve.executor.engine.outputs import (
    content_type_for,
    output_kind,
    refs_from_history_outputs,
    refs_from_node_output,
    texts_from_history_outputs,
)


@pytest.mark.parametrize(
    ("media_key", "filename", "animated", "fmt", "expected"),
    [
        ("images", "a_00001_.png", False, None, OutputKind.IMAGE),
        ("images", "a.JPG", False, None, OutputKind.IMAGE),
        ("images", "a.webp", True, None, OutputKind.VIDEO),
        ("images", "a.mp4", False, None, OutputKind.VIDEO),
        ("images", "a.bin", False, "video/h264-mp4", OutputKind.VIDEO),
        ("gifs", "a.gif", False, None, OutputKind.VIDEO),
        ("audio", "a.flac", False, None, OutputKind.AUDIO),
        ("latents", "a.latent", False, None, OutputKind.LATENT),
        ("files", "a.latent", False, None, OutputKind.LATENT),
        ("text", "a.txt", False, None, OutputKind.TEXT),
        ("3d", "mesh.glb", False, None, OutputKind.FILE),
        ("images", "weird.xyz", False, None, OutputKind.FILE),
    ],
)
def test_output_kind(media_key, filename, animated, fmt, expected):
    assert output_kind(media_key, filename, animated=animated, fmt=fmt) == expected


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("x.png", "image/png"),
        ("x.JPEG", "image/jpeg"),
        ("x.webm", "video/webm"),
        ("x.flac", "audio/flac"),
        ("x.latent", "application/octet-stream"),
        ("noextension", "application/octet-stream"),
    ],
)
def test_content_type_by_extension(filename, expected):
    assert content_type_for(filename) == expected


def test_node_output_numbers_items_and_marks_previews():
    refs = refs_from_node_output(
        "9",
        {
            "images": [
                {"filename": "a.png", "subfolder": "", "type": "output"},
                {"filename": "b.png", "subfolder": "s", "type": "temp"},
            ],
            "audio": [{"filename": "c.flac", "subfolder": "", "type": "output"}],
        },
    )
    assert [(r.index, r.filename, r.media_key) for r in refs] == [
        (0, "a.png", "images"),
        (1, "b.png", "images"),
        (2, "c.flac", "audio"),
    ]
    assert [r.is_preview for r in refs] == [False, True, False]
    assert refs[1].subfolder == "s"
    assert refs[2].kind == OutputKind.AUDIO


def test_animated_flag_beside_images_makes_them_video():
    refs = refs_from_node_output(
        "5",
        {
            "images": [{"filename": "x.webp", "subfolder": "", "type": "output"}],
            "animated": [True],
        },
    )
    assert len(refs) == 1
    assert refs[0].kind == OutputKind.VIDEO
    assert refs[0].content_type == "image/webp"


def test_history_outputs_skip_text_strings_but_keep_them_as_texts():
    outputs = {
        "3": {"images": [{"filename": "o.png", "subfolder": "", "type": "output"}]},
        "7": {"text": ["hello", "world"]},
    }
    refs = refs_from_history_outputs(outputs)
    assert refs["7"] == ()
    assert refs["3"][0].node_id == "3"
    assert texts_from_history_outputs(outputs) == {"7": ("hello", "world")}
