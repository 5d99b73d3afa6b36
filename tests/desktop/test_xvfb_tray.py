"""The real thing: the app under Xvfb with Debian's trayer as the tray host. The icon must be
embedded in the tray, a real right-click (xdotool) must open its menu, and a screenshot of it
is saved in the test's temporary directory."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import psutil
import pytest
from PySide6.QtGui import QColor, QImage

from sayit_desktop.icons import COLOURS

from .helpers import REPO, healthy, port_is_free, wait_for
from .xsession import PACKAGES, XSession, missing_tools


@pytest.fixture
def xsession(tmp_path):
    missing = missing_tools()
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: apt-get install {PACKAGES}")
    session = XSession(tmp_path / "x").start()
    yield session
    session.stop()


def colour_near(image: QImage, rect, colour: str, tolerance: int = 40) -> bool:
    want = QColor(colour)
    x0, y0, w, h = rect
    for y in range(max(0, y0), min(image.height(), y0 + h)):
        for x in range(max(0, x0), min(image.width(), x0 + w)):
            c = image.pixelColor(x, y)
            if (abs(c.red() - want.red()) + abs(c.green() - want.green())
                    + abs(c.blue() - want.blue())) < tolerance:
                return True
    return False


def test_icon_is_embedded_and_its_menu_opens_on_right_click(xsession, node_env, real_node, tmp_path, spawned):
    panel = xsession.start_tray()
    app = subprocess.Popen([sys.executable, "-m", "sayit_desktop"], env=xsession.env(), cwd=node_env.root,
                           stdout=subprocess.DEVNULL, stderr=open(tmp_path / "app.log", "wb"))
    spawned.append(app)

    # The icon: a window of the app whose parent is not the root window but trayer's socket.
    root = xsession.root()
    icon = None

    def find_icon():
        nonlocal icon
        for win in xsession.search("--pid", str(app.pid)):
            try:
                parent = xsession.parent(win)
                geometry = xsession.geometry(win)
            except (RuntimeError, AttributeError):
                continue
            if parent and parent != root and geometry["width"] > 1 and geometry["mapped"]:
                icon = win
                return True
        return False

    assert wait_for(find_icon, 20, 0.2), (tmp_path / "app.log").read_text()[-3000:]
    socket_window = xsession.parent(icon)
    assert xsession.parent(socket_window) == panel  # embedded: icon -> trayer socket -> panel
    g_icon, g_panel = xsession.geometry(icon), xsession.geometry(panel)
    assert g_panel["x"] <= g_icon["x"] < g_panel["x"] + g_panel["width"]
    assert g_panel["y"] <= g_icon["y"] < g_panel["y"] + g_panel["height"]

    assert wait_for(lambda: healthy(node_env.port), 60), (tmp_path / "app.log").read_text()[-3000:]
    time.sleep(1.5)  # a poll or two: the status line and icon say Running / idle
    time.sleep(0.7)  # the icon has geometry; give the tray a moment to paint it

    tray_shot = QImage(str(xsession.screenshot(tmp_path / "tray.png")))
    # The tray shows the idle (green) icon of a running node.
    assert colour_near(tray_shot, (g_icon["x"], g_icon["y"], g_icon["width"], g_icon["height"]),
                       COLOURS["idle"][1])
    assert not colour_near(tray_shot, (g_icon["x"], g_icon["y"], g_icon["width"], g_icon["height"]),
                           COLOURS["error"][1])

    before = set(xsession.search("--onlyvisible", "--pid", str(app.pid)))
    xsession.right_click(icon)
    menu = None

    def find_menu():
        nonlocal menu
        for win in set(xsession.search("--onlyvisible", "--pid", str(app.pid))) - before:
            g = xsession.geometry(win)
            if g["width"] > 100 and g["height"] > 100 and g["mapped"]:
                menu = win
                return True
        return False

    assert wait_for(find_menu, 10, 0.1), "no menu appeared after the right-click"
    time.sleep(0.7)
    shot = xsession.screenshot(tmp_path / "tray-menu.png")
    assert shot.stat().st_size > 5000

    image = QImage(str(shot))
    g_menu = xsession.geometry(menu)
    # The menu is drawn: many colours (text on a background) inside its rectangle.
    colours = {image.pixel(x, y) for x in range(g_menu["x"], g_menu["x"] + g_menu["width"], 3)
               for y in range(g_menu["y"], g_menu["y"] + g_menu["height"], 3)}
    assert len(colours) > 8

    def menu_closed():
        try:
            return not xsession.geometry(menu)["mapped"]
        except RuntimeError:  # the popup's window is gone
            return True

    assert not menu_closed()
    xsession.key("Escape")
    assert wait_for(menu_closed, 5, 0.1)

    # Leaving (SIGTERM works like Quit): the node goes too.
    nodes = [p for p in psutil.Process(app.pid).children() if "sayit_node" in " ".join(p.cmdline())]
    assert len(nodes) == 1
    app.send_signal(signal.SIGTERM)
    assert app.wait(20) == 0
    assert wait_for(lambda: not nodes[0].is_running() or nodes[0].status() == psutil.STATUS_ZOMBIE, 10)
    assert port_is_free(node_env.port)


def test_without_a_tray_the_app_shows_its_window_and_closing_it_quits(xsession, node_env, real_node, tmp_path,
                                                                      spawned):
    """Xvfb with no tray host (a bare X session): the app finds no system tray, shows a window
    that carries the menu, and closing that window stops the node and ends the app."""
    app = subprocess.Popen([sys.executable, "-m", "sayit_desktop"], env=xsession.env(), cwd=node_env.root,
                           stdout=subprocess.DEVNULL, stderr=open(tmp_path / "app.log", "wb"))
    spawned.append(app)
    window = None

    def find_window():
        nonlocal window
        for win in xsession.search("--onlyvisible", "--pid", str(app.pid)):
            try:
                g = xsession.geometry(win)
            except RuntimeError:
                continue
            if g["width"] > 300 and g["height"] > 300 and g["mapped"]:
                window = win
                return True
        return False

    assert wait_for(find_window, 30, 0.2), (tmp_path / "app.log").read_text()[-3000:]
    assert xsession.run("xdotool", "getwindowname", window).strip() == "SayIt"
    assert "no system tray" in (tmp_path / "app.log").read_text()
    assert wait_for(lambda: healthy(node_env.port), 60), (tmp_path / "app.log").read_text()[-3000:]
    time.sleep(1.0)
    shot = QImage(str(xsession.screenshot(tmp_path / "no-tray.png")))
    g = xsession.geometry(window)
    colours = {shot.pixel(x, y) for x in range(g["x"], g["x"] + g["width"], 5)
               for y in range(g["y"], g["y"] + min(g["height"], 200), 5)}
    assert len(colours) > 8  # drawn: the notice, the buttons
    assert colour_near(shot, (g["x"], g["y"], g["width"], 120), "#fff4ce", 12)  # the notice's background

    nodes = [p for p in psutil.Process(app.pid).children() if "sayit_node" in " ".join(p.cmdline())]
    assert len(nodes) == 1
    xsession.close_window(window)
    assert app.wait(30) == 0, (tmp_path / "app.log").read_text()[-3000:]
    assert wait_for(lambda: not nodes[0].is_running() or nodes[0].status() == psutil.STATUS_ZOMBIE, 10)
    assert port_is_free(node_env.port)


def test_transcribe_file_from_the_real_tray_menu(xsession, node_env, real_node, tmp_path, speech_dir):
    """On Xvfb with trayer: a real right-click on the icon, a real click on "Transcribe file…"
    (the file dialog answers with a real espeak-ng recording), the transcript shows in its
    window, and "Save as SRT…" writes a valid SRT rendered by the node (tiny.en)."""
    from tests.speech import PARAGRAPHS, speak_paragraphs, text_of, wer

    from .test_transcribe import lines_text, parse_srt

    audio = speak_paragraphs(PARAGRAPHS[4:6], speech_dir / "xvfb-tray-talk.wav")
    reference = text_of(PARAGRAPHS[4:6])
    xsession.start_tray()
    srt, result_file, shot = tmp_path / "talk.srt", tmp_path / "result.json", tmp_path / "tray-transcribe.png"
    run = subprocess.run([sys.executable, "-m", "tests.desktop.xvfb_transcribe_app", str(audio), str(srt),
                          str(result_file), str(shot)],
                         env=xsession.env(), cwd=REPO, capture_output=True, text=True, timeout=400)
    assert result_file.exists(), run.stderr[-3000:]
    result = json.loads(result_file.read_text())
    assert "error" not in result, (result, run.stderr[-3000:])
    assert run.returncode == 0
    assert result["system_tray_available"] is True  # a real tray: trayer
    assert result["dialog_calls"] == 1  # the menu item opened the (patched) file dialog
    assert any(s.startswith(("Queued", "Transcribing")) for s in result["statuses"]), result["statuses"]
    assert ["Transcription finished", "xvfb-tray-talk.wav is ready."] in result["messages"]
    assert result["viewer_title"] == "xvfb-tray-talk.wav — SayIt"
    assert result["viewer_text"].startswith("[0:00]")
    assert wer(reference, lines_text(result["viewer_text"])) < 20, result["viewer_text"]
    blocks = parse_srt(srt.read_text(encoding="utf-8"))
    assert [b[0] for b in blocks] == list(range(1, len(blocks) + 1))
    assert all(start < end for _, start, end, _ in blocks)
    assert wer(reference, " ".join(b[3] for b in blocks)) < 20
    assert QImage(str(shot)).width() > 500
    assert port_is_free(node_env.port)  # the app stopped its node
