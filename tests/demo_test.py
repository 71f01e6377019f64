"""jfesgan demo: the page's API answers as the restored networks do, refuses bad uploads with a
message while it keeps serving, and a real headless browser clicks through the page."""

import http.client
import json
import os
import shutil
import threading
import urllib.request

import numpy as np
import pytest
from PIL import Image

from jfesgan.data.pipeline import to_float
from jfesgan.evaluation.restored import RestoredGenerator, RestoredRecogniser
from jfesgan.tools import demo as demo_lib


@pytest.fixture(scope="module")
def server(tiny_run):
  _, workdir = tiny_run
  d = demo_lib.Demo(workdir, max_upload_bytes=1 << 20)
  srv = demo_lib.serve(d, "127.0.0.1", 0)
  thread = threading.Thread(target=srv.serve_forever, daemon=True)
  thread.start()
  yield d, f"http://127.0.0.1:{srv.server_address[1]}"
  srv.shutdown()
  srv.server_close()


def _post(url, body: bytes, headers=None):
  req = urllib.request.Request(url, data=body, method="POST", headers=headers or {})
  try:
    with urllib.request.urlopen(req) as r:
      return r.status, json.load(r)
  except urllib.error.HTTPError as e:
    return e.code, json.load(e)


def _get(url):
  with urllib.request.urlopen(url) as r:
    return json.load(r)


def _png(array: np.ndarray) -> bytes:
  import io
  buf = io.BytesIO()
  Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array).save(buf, "PNG")
  return buf.getvalue()


def _decode(uri: str) -> np.ndarray:
  import base64
  import io
  return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))


def test_the_api_answers_as_the_restored_networks(server, tiny_run):
  demo, url = server
  _, workdir = tiny_run
  info = _get(url + "/api/info")
  assert info["classes"] == list(RestoredGenerator.load(workdir).class_names)
  assert info["heldout"] > 0 and info["recogniser"] == "joint" and info["generator"] == "joint"
  held = _get(url + "/api/heldout")["faces"]
  assert len(held) == info["heldout"] and held[0]["label"] in info["classes"]
  # A held-out face: the recogniser's probabilities and the generator's translations of it.
  status, res = _post(url + "/api/analyse?heldout=0", b"")
  assert status == 200, res
  crop = demo.heldout[:1]
  rec, gen = RestoredRecogniser.load(workdir), RestoredGenerator.load(workdir)
  np.testing.assert_allclose(res["probabilities"], rec.probabilities(to_float(crop))[0], atol=1e-5)
  k = len(info["classes"])
  want = gen.translate(np.repeat(to_float(crop), k, 0), np.eye(k, dtype=np.float32))
  got = np.stack([_decode(u) for u in res["translations"]])
  np.testing.assert_allclose(got, np.rint((want[..., 0] + 1) * 127.5), atol=1)
  # The same face uploaded as a PNG crop reads the same.
  status, up = _post(url + "/api/analyse", _png(crop[0]))
  assert status == 200 and up["probabilities"] == pytest.approx(res["probabilities"], abs=1e-6)
  # The slider: t=0 is the first expression's translation, t=1 the second's.
  a, b = info["classes"][0], info["classes"][1]
  for t, column in ((0, 0), (1, 1)):
    status, mid = _post(f"{url}/api/interpolate?a={a}&b={b}&t={t}", _png(_decode(up["crop"])[..., None]))
    assert status == 200, mid
    np.testing.assert_allclose(_decode(mid["image"]), got[column], atol=1)
  prior = _get(url + f"/api/prior?seed=3&n=4&expression={b}")["faces"]
  assert len(prior) == 4 and prior == _get(url + f"/api/prior?seed=3&n=4&expression={b}")["faces"]


def test_bad_requests_are_answered_and_the_server_keeps_serving(server, tmp_path):
  _, url = server
  host, port = url.removeprefix("http://").split(":")
  # Not an image: refused before decoding.
  status, res = _post(url + "/api/analyse", b"hello, this is text")
  assert status == 415 and "not an image" in res["error"]
  # Too large: refused from its length alone, unread.
  conn = http.client.HTTPConnection(host, int(port))
  conn.putrequest("POST", "/api/analyse")
  conn.putheader("Content-Length", str(50 << 20))
  conn.endheaders()
  conn.send(b"\x89PNG\r\n\x1a\n")
  r = conn.getresponse()
  assert r.status == 413 and "50.0 MB; the limit is 1.0 MB" in json.load(r)["error"]
  conn.close()
  # A truncated image, a photo with no face, an empty upload, a bad slider value, a bad path.
  photo = (np.random.default_rng(0).random((300, 400, 3)) * 255).astype(np.uint8)
  data = _png(photo)
  status, res = _post(url + "/api/analyse", data[: len(data) // 3])
  assert status == 400 and "truncated" in res["error"]
  status, res = _post(url + "/api/analyse", data)
  assert status == 422 and "no face found" in res["error"]
  assert _post(url + "/api/analyse", b"")[0] == 400
  status, res = _post(url + "/api/interpolate?a=anger&b=joy&t=0.5", _png(np.zeros((32, 32, 1), np.uint8)))
  assert status == 400 and "'joy'" in res["error"]
  status, res = _post(url + "/api/interpolate?a=anger&b=anger&t=2", _png(np.zeros((32, 32, 1), np.uint8)))
  assert status == 400 and "[0, 1]" in res["error"]
  status, res = _post(url + "/api/interpolate?a=anger&b=anger&t=0", _png(np.zeros((40, 40, 1), np.uint8)))
  assert status == 400 and "40x40" in res["error"]
  assert _post(url + "/api/analyse?heldout=999", b"")[0] == 404
  with pytest.raises(urllib.error.HTTPError, match="404"):
    _get(url + "/nowhere")
  # Still serving.
  assert _get(url + "/api/info")["classes"]


def _browser():
  """Chromium for the browser test: $JFESGAN_CHROMIUM or one on the PATH (Debian's package
  ``chromium``: .ci/run installs it), with Playwright; skip (or fail where CI requires it)."""
  path = os.environ.get("JFESGAN_CHROMIUM") or next(
      (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
  try:
    import playwright.sync_api  # noqa: F401
  except ImportError:
    path = None
  if path is None:
    if os.environ.get("JFESGAN_REQUIRE_BROWSER"):
      pytest.fail("JFESGAN_REQUIRE_BROWSER is set but no Chromium + Playwright is installed")
    pytest.skip("no Chromium or Playwright here (pip install -e '.[test]'; apt-get install chromium)")
  return path


def test_a_browser_clicks_through_the_page(server, tmp_path):
  chromium = _browser()
  from playwright.sync_api import expect, sync_playwright
  demo, url = server
  face = tmp_path / "face.png"
  face.write_bytes(_png(demo.heldout[1]))
  text = tmp_path / "notes.txt"
  text.write_text("not a photo")
  big = tmp_path / "big.jpg"
  big.write_bytes(b"\xff\xd8\xff" + bytes(50 << 20))
  photo = tmp_path / "landscape.png"
  photo.write_bytes(_png((np.random.default_rng(1).random((300, 400, 3)) * 255).astype(np.uint8)))
  truncated = tmp_path / "truncated.png"
  truncated.write_bytes(photo.read_bytes()[:5000])
  expect.set_options(timeout=60_000)  # the first request of each kind compiles its networks
  with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=chromium, args=[
        "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"])
    page = browser.new_page()
    page.goto(url)
    expect(page.locator("#priorrow img")).to_have_count(6)
    # Upload a face: the probabilities, one translation per expression, the slider.
    page.set_input_files("#file", str(face))
    expect(page.locator("#probs tr")).to_have_count(len(demo.classes))
    expect(page.locator("#translations img")).to_have_count(len(demo.classes))
    expect(page.locator("#error")).to_be_hidden()
    expect(page.locator("#interpcap")).to_contain_text("100 %")
    start = page.locator("#interp").get_attribute("src")
    page.locator("#slider").fill("100")
    expect(page.locator("#interpcap")).to_contain_text(f"100 % {page.locator('#to').input_value()}")
    assert page.locator("#interp").get_attribute("src") != start
    # A held-out face, by a click.
    page.locator("#heldout img").nth(2).click()
    expect(page.locator("#probs tr.top")).to_have_count(1)
    # Bad uploads: each answered on the page; the page and server go on working.
    for path, message in ((text, "not an image"), (big, "the limit is 1.0 MB"),
                          (truncated, "truncated"), (photo, "no face found")):
      page.set_input_files("#file", str(path))
      expect(page.locator("#error")).to_contain_text(message)
    page.set_input_files("#file", str(face))
    expect(page.locator("#error")).to_be_hidden()
    page.locator("#prior").click()
    expect(page.locator("#priorrow img")).to_have_count(6)
    page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)
    browser.close()
