"""The web page at `/`, driven in a real headless Chromium (Debian's, through playwright) against a
real node with an API key: key prompt, upload of real speech, live progress, transcript,
click-to-seek, SRT download, copy, cancel, delete, cluster view, phone width."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import NodeProcess
from tests.speech import PARAGRAPHS, speak_paragraphs, text_of, wer

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
API_KEY = "page-test-key"
SRT_BLOCK = re.compile(r"^(\d+)\n(\d\d:\d\d:\d\d,\d{3}) --> (\d\d:\d\d:\d\d,\d{3})\n(.+)$")

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)")


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    node = NodeProcess(tmp_path_factory.mktemp("web-node"), env={"SAYIT_API_KEYS": API_KEY}).start()
    yield node
    node.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, node):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=node.url)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    foreign = _foreign_requests(page, node)
    yield page
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"
    assert foreign == [], f"the page fetched from elsewhere than its node: {foreign}"


def _foreign_requests(page, node: NodeProcess) -> list[str]:
    """Every request the page makes that does not go to its own node (a CDN, a font, ...)."""
    foreign: list[str] = []
    page.on("request", lambda request: None if request.url.startswith((node.url + "/", "blob:", "data:"))
            else foreign.append(request.url))
    return foreign


# Every control a person (or a screen reader) can reach has a name: its <label>, aria-label,
# aria-labelledby or its text. Lists the ones that do not (hidden ones are not reachable).
UNNAMED_CONTROLS = """() => {
  const named = (el) => {
    if ((el.getAttribute('aria-label') || '').trim()) return true;
    const by = el.getAttribute('aria-labelledby');
    if (by && by.split(/\\s+/).some((id) => (document.getElementById(id)?.textContent || '').trim())) return true;
    if (el.labels && [...el.labels].some((l) => l.textContent.trim())) return true;
    return ['BUTTON', 'A', 'SUMMARY'].includes(el.tagName) && el.textContent.trim() !== '';
  };
  const controls = document.querySelectorAll('input, select, textarea, button, a[href], progress, audio, [tabindex], dialog');
  return [...controls].filter((el) => !el.closest('[hidden]') && !named(el)).map((el) => el.outerHTML.slice(0, 120));
}"""


def _parse_srt(text: str) -> list[tuple[int, str, str, str]]:
    blocks = [b for b in text.replace("\r\n", "\n").strip().split("\n\n") if b]
    parsed = []
    for block in blocks:
        match = SRT_BLOCK.match(block)
        assert match, f"not an SRT block: {block!r}"
        parsed.append((int(match[1]), match[2], match[3], match[4]))
    return parsed


def test_page_transcribes_uploads_with_progress_and_downloads_srt(page, node, speech_dir, tmp_path):
    first = speak_paragraphs(PARAGRAPHS[:2], speech_dir / "web-meeting.wav")  # ~30 s
    first_text = text_of(PARAGRAPHS[:2])
    second = speak_paragraphs(PARAGRAPHS[2:3], speech_dir / "web-note.wav")

    page.goto(node.url + "/")
    # The node wants a key: the page asks for it, keeps it, and sends it.
    dialog = page.locator("#key-dialog")
    dialog.wait_for(state="visible")
    dialog.get_by_role("textbox", name="Key").fill(API_KEY)
    dialog.get_by_role("button", name="Save").click()
    page.wait_for_function("k => localStorage.getItem('sayit.apiKey') === k", arg=API_KEY)
    page.get_by_text("(this node)").wait_for()  # the cluster view, fetched with the key
    cluster = page.locator("#node-list").inner_text()
    assert "tiny.en" in cluster and "faster-whisper" in cluster  # model and engine
    assert re.search(r"\d+/\d+ parts running", cluster) and "CPU" in cluster, cluster  # and its load

    # Record every status line the page shows: progress must be seen moving, not only "Done".
    page.evaluate("""() => {
        window.seen = [];
        new MutationObserver(() => document.querySelectorAll('.job-status').forEach(
            (el) => { if (!window.seen.includes(el.textContent)) window.seen.push(el.textContent); }))
          .observe(document.getElementById('job-list'), {subtree: true, childList: true, characterData: true});
    }""")
    streams: list[str] = []  # progress comes from the jobs' server-sent events
    page.on("request", lambda request: streams.append(request.url) if request.url.endswith("/events") else None)
    page.get_by_label("Spoken language").select_option("en")
    page.locator("#files").set_input_files([str(first), str(second)])  # two files at once

    cards = page.locator(".job")
    cards.nth(1).wait_for()
    meeting = page.locator(".job", has_text="web-meeting.wav")
    meeting.locator(".job-status", has_text="Done").wait_for(timeout=120_000)
    page.locator(".job", has_text="web-note.wav").locator(".job-status", has_text="Done").wait_for(timeout=120_000)
    seen = page.evaluate("window.seen")
    assert any(re.search(r"(Queued|Transcribing) \d+%", line) for line in seen), seen
    assert any(re.search(r"of \d+ parts", line) for line in seen), seen
    assert len(streams) == 2, streams  # one event stream per job

    # The transcript with timestamps; each segment seeks the local audio.
    segments = meeting.locator(".segment")
    assert segments.count() >= 3
    shown = " ".join(meeting.locator(".segment .text").all_inner_texts())
    assert wer(first_text, shown) < 20
    times = meeting.locator(".segment .time").all_inner_texts()
    assert times[0] == "0:00" and all(re.fullmatch(r"\d+:\d\d", t) for t in times)
    third = segments.nth(2)
    start = float(third.get_attribute("data-start"))
    assert start > 1
    third.click()
    page.wait_for_function("([el, t]) => Math.abs(el.currentTime - t) < 0.6",
                           arg=[meeting.locator("audio").element_handle(), start])

    assert page.evaluate(UNNAMED_CONTROLS) == []  # with job cards, segments and players on the page

    # Download as SRT through the page: a valid SRT file with the words.
    meeting.get_by_label(re.compile("Download format")).select_option("srt")
    with page.expect_download() as download_info:
        meeting.get_by_role("button", name=re.compile("Download the transcript")).click()
    download = download_info.value
    assert download.suggested_filename == "web-meeting.srt"
    saved = tmp_path / "web-meeting.srt"
    download.save_as(saved)
    blocks = _parse_srt(saved.read_text(encoding="utf-8"))
    assert [b[0] for b in blocks] == list(range(1, len(blocks) + 1))
    assert all(b[1] < b[2] for b in blocks)
    assert wer(first_text, " ".join(b[3] for b in blocks)) < 20

    # Copy to the clipboard.
    meeting.get_by_role("button", name=re.compile("Copy the transcript")).click()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert wer(first_text, copied) < 20

    # Delete a finished job: the card goes, and the transcript is gone from the node.
    note = page.locator(".job", has_text="web-note.wav")
    note_id = next(j["jobId"] for j in _jobs(node) if j["filename"] == "web-note.wav")
    note.get_by_role("button", name=re.compile("^Delete")).click()
    note.wait_for(state="detached")
    with node.client(headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        assert client.get(f"/api/jobs/{note_id}/result").status_code == 404

    # A reload keeps the key and lists the job from the node (no local audio then).
    page.reload()
    page.locator(".job", has_text="web-meeting.wav").locator(".segment").first.wait_for()
    assert not page.locator("#key-dialog").is_visible()
    assert page.locator(".job", has_text="web-note.wav").count() == 0


def test_page_cancels_a_running_job(browser, node, minute_speech):
    path, _ = minute_speech
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.add_init_script(f"localStorage.setItem('sayit.apiKey', '{API_KEY}')")
    page.goto(node.url + "/")
    page.locator("#files").set_input_files([str(path)])
    card = page.locator(".job", has_text=path.name)
    card.get_by_role("button", name=re.compile("^Cancel")).click()  # enabled once the upload is a job
    card.locator(".badge", has_text="Cancelled").wait_for(timeout=30_000)
    job_id = next(j["jobId"] for j in _jobs(node) if j["filename"] == path.name)
    with node.client(headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        assert client.get(f"/api/jobs/{job_id}").json()["status"] == "cancelled"
    context.close()


def _jobs(node: NodeProcess) -> list[dict]:
    with node.client(headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        return client.get("/api/jobs").json()["jobs"]


def test_page_fits_a_phone_and_reports_upload_errors(browser, node, tmp_path):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    foreign = _foreign_requests(page, node)
    page.add_init_script(f"localStorage.setItem('sayit.apiKey', '{API_KEY}')")
    page.goto(node.url + "/")
    page.get_by_text("(this node)").wait_for()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling
    not_audio = tmp_path / "notes.txt"
    not_audio.write_text("this is not audio\n" * 50)
    page.locator("#files").set_input_files([str(not_audio)])
    card = page.locator(".job", has_text="notes.txt")
    card.locator(".badge", has_text="Failed").wait_for(timeout=30_000)
    error = card.locator(".job-error").inner_text()
    assert error and "Traceback" not in error
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    # Controls are big enough to hit with a finger, and every one has an accessible name.
    small = page.evaluate("""() => [...document.querySelectorAll('button, select, label.button')]
        .filter((el) => el.offsetParent && el.getBoundingClientRect().height < 32).map((el) => el.outerHTML.slice(0, 80))""")
    assert small == []
    assert page.evaluate(UNNAMED_CONTROLS) == []
    context.close()
    assert foreign == [], f"the page fetched from elsewhere than its node: {foreign}"


def test_page_shows_the_transcript_growing_while_it_runs(browser, node_factory, minute_speech):
    """One part at a time (MAX_CONCURRENT_CHUNKS=1), so the first parts' text is on the page while
    the job still runs; the final transcript then replaces it with timestamped segments."""
    grower = node_factory(env={"MAX_CONCURRENT_CHUNKS": "1"})
    path, text = minute_speech
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(grower.url + "/")
    page.evaluate("""() => {
        window.growing = [];
        new MutationObserver(() => document.querySelectorAll('.job').forEach((job) => {
            const shown = job.querySelector('.transcript').textContent.trim();
            if (job.dataset.status === 'running' && shown && !window.growing.includes(shown)) window.growing.push(shown);
        })).observe(document.getElementById('job-list'), {subtree: true, childList: true, characterData: true,
                                                         attributes: true});
    }""")
    page.locator("#files").set_input_files([str(path)])
    card = page.locator(".job", has_text=path.name)
    card.locator(".segment").first.wait_for(timeout=180_000)
    growing = page.evaluate("window.growing")
    final = " ".join(card.locator(".segment .text").all_inner_texts())
    assert growing, "no transcript text was shown while the job ran"
    assert len(growing[0].split()) < 0.8 * len(final.split())  # a part of it, not the whole
    assert wer(text, final) < 20
    context.close()


def test_page_takes_dropped_files_and_downloads_every_format(browser, node, short_speech, tmp_path):
    """A file dropped on the drop zone (a real DataTransfer carrying the wav's bytes, dispatched as the
    browser would) becomes a job; txt, vtt and json downloads carry the transcript."""
    import base64
    import json

    path, text = short_speech
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.add_init_script(f"localStorage.setItem('sayit.apiKey', '{API_KEY}')")
    page.goto(node.url + "/")
    page.get_by_text("(this node)").wait_for()
    drop = """([b64, name, target]) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], name, {type: 'audio/wav'}));
        const element = document.querySelector(target);
        for (const type of ['dragenter', 'dragover', 'drop']) {
            element.dispatchEvent(new DragEvent(type, {bubbles: true, cancelable: true, dataTransfer: transfer}));
        }
    }"""
    audio = base64.b64encode(path.read_bytes()).decode()
    page.evaluate(drop, [audio, "dropped.wav", "#drop"])
    card = page.locator(".job", has_text="dropped.wav")
    card.locator(".segment").first.wait_for(timeout=120_000)
    assert card.count() == 1  # one drop, one job (the drop used to bubble to the window and add it twice)
    assert sum(j["filename"] == "dropped.wav" for j in _jobs(node)) == 1
    saved = {}
    for fmt, extension in (("text", "txt"), ("vtt", "vtt"), ("verbose_json", "json")):
        card.get_by_label(re.compile("Download format")).select_option(fmt)
        with page.expect_download() as info:
            card.get_by_role("button", name=re.compile("Download the transcript")).click()
        assert info.value.suggested_filename == f"dropped.{extension}"
        info.value.save_as(tmp_path / f"dropped.{extension}")
        saved[extension] = (tmp_path / f"dropped.{extension}").read_text(encoding="utf-8")
    assert wer(text, saved["txt"]) < 20
    assert saved["vtt"].startswith("WEBVTT") and " --> " in saved["vtt"]
    body = json.loads(saved["json"])
    assert wer(text, body["text"]) < 20 and body["segments"][0]["start"] >= 0
    # Dropped beside the zone (on the page): taken too, once, and the page does not navigate away.
    page.evaluate(drop, [audio, "beside.wav", "#jobs-heading"])
    page.locator(".job", has_text="beside.wav").locator(".badge", has_text=re.compile("Queued|Transcribing|Done")).wait_for()
    assert page.locator(".job", has_text="beside.wav").count() == 1 and page.url == node.url + "/"
    context.close()
