"""The web page labels speakers: 'Label speakers' sends diarize=true and the transcript names
who speaks where the voice changes (real Chromium, real node, two espeak-ng voices)."""

from __future__ import annotations

import os

from tests.conversation import make_conversation
from tests.test_web import API_KEY, browser, node, page, pytestmark  # noqa: F401  (fixtures and skip mark)


def test_page_labels_speakers(page, node, tmp_path):  # noqa: F811
    audio = tmp_path / "interview.wav"
    make_conversation(audio, 2, 25, seed=3)
    page.goto(node.url + "/")
    dialog = page.locator("#key-dialog")
    dialog.wait_for(state="visible")
    dialog.get_by_role("textbox", name="Key").fill(API_KEY)
    dialog.get_by_role("button", name="Save").click()
    page.get_by_label("Spoken language").select_option("en")
    page.get_by_label("Label speakers (who said what)").check()
    page.locator("#files").set_input_files([str(audio)])
    card = page.locator(".job", has_text="interview.wav")
    card.locator(".job-status", has_text="Done").wait_for(timeout=120_000)
    speakers = card.locator(".segment .speaker")
    speakers.first.wait_for()
    names = speakers.all_inner_texts()
    assert {"Speaker 1:", "Speaker 2:"} <= {n.strip() for n in names}, names
    # a name appears only where the voice changes
    assert all(a != b for a, b in zip(names, names[1:])), names
    shot = os.environ.get("SAYIT_SCREENSHOT_DIR")
    if shot:
        page.screenshot(path=os.path.join(shot, "web-speakers.png"), full_page=True)
