"""Run inside a network namespace with only loopback up (see test_local_app.py): start `medsight
app`, drive its page in headless Chromium (enter by the printed link, upload, read the result and
the report), try the Host check, and print what was seen as one JSON line."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

medsight, bundle, image, folder, chromium = sys.argv[1:6]
seen: dict = {}
try:
    socket.create_connection(("192.0.2.1", 80), timeout=3).close()  # TEST-NET-1: must fail
    seen["outside_reachable"] = True
except OSError as exc:
    seen["outside_reachable"] = False
    seen["outside_error"] = str(exc)

proc = subprocess.Popen([medsight, "app", "--bundle", bundle, "--folder", folder, "--no-browser"],
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
lines = []
for line in proc.stdout:
    lines.append(line)
    if line.startswith("open http://127.0.0.1:"):
        url = line.split()[1]
        break
else:
    print(json.dumps({"error": "no link printed", "output": "".join(lines)}))
    sys.exit(1)
base = url.split("/local/enter")[0]
try:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium,
                                    args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = browser.new_context().new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(base + "/")  # without the link: no account to sign in to, the page says so
        page.wait_for_selector("body.ready")
        seen["without_link"] = page.locator("#status").inner_text()
        seen["signin_visible"] = page.locator("#signin-view").is_visible()
        page.goto(url)
        expect(page.locator("#upload-view")).to_be_visible(timeout=30_000)
        seen["who"] = page.locator("#who").inner_text()
        seen["signout_visible"] = page.locator("#signout").is_visible()
        page.locator("#file-input").set_input_files(image)
        expect(page.locator("#result-view")).to_be_visible(timeout=60_000)
        seen["label"] = page.locator("#result-label").inner_text().strip()
        href = page.locator("#report-link").get_attribute("href")
        report = page.context.new_page()
        answer = report.goto(base + href if href.startswith("/") else href)
        seen["report_status"] = answer.status if answer else None
        seen["report_has_label"] = seen["label"] in report.locator("body").inner_text()
        seen["page_errors"] = errors
        browser.close()
    request = urllib.request.Request(base + "/", headers={"Host": "evil.example:80"})
    try:
        urllib.request.urlopen(request, timeout=10)
        seen["foreign_host"] = 200
    except urllib.error.HTTPError as exc:
        seen["foreign_host"] = exc.code
    seen["reports"] = sorted(p.name for p in (Path(folder) / "reports").glob("*.html"))
finally:
    proc.terminate()
    proc.wait(30)
print(json.dumps(seen))
