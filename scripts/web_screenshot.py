#!/usr/bin/env python3
"""Loads a page in headless Chromium through chromedriver's WebDriver API, waits until its
title says it is done (the demo page sets "vlbridge: pass", "vlbridge: FAIL" or
"vlbridge: error"), saves a screenshot of the whole page and prints the title; each `--save ID FILE` also
writes the text of the page's element `ID` to FILE. Standard library only.

Usage: web_screenshot.py URL OUT.png [--timeout SECONDS] [--save ID FILE]..
"""
import base64
import json
import subprocess
import sys
import time
import urllib.request

PORT = 9516
ARGS = ["--headless=new", "--enable-unsafe-webgpu", "--enable-features=Vulkan", "--no-sandbox",
        "--disable-dev-shm-usage", "--window-size=1000,800"]


def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{PORT}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())["value"]


def main():
    url, out = sys.argv[1], sys.argv[2]
    timeout = float(sys.argv[sys.argv.index("--timeout") + 1]) if "--timeout" in sys.argv else 120.0
    saves = [(sys.argv[i + 1], sys.argv[i + 2]) for i, a in enumerate(sys.argv) if a == "--save"]
    driver = subprocess.Popen(["chromedriver", f"--port={PORT}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):
            try:
                call("GET", "/status")
                break
            except OSError:
                time.sleep(0.2)
        session = call("POST", "/session", {"capabilities": {"alwaysMatch": {"goog:chromeOptions": {"args": ARGS}}}})
        sid = session["sessionId"]
        call("POST", f"/session/{sid}/url", {"url": url})
        deadline = time.time() + timeout
        title = ""
        while time.time() < deadline:
            title = call("GET", f"/session/{sid}/title")
            if title.startswith("vlbridge: "):
                break
            time.sleep(0.5)
        # The whole page in one shot: the window grows to the page's height first.
        height = call("POST", f"/session/{sid}/execute/sync", {"script": "return document.documentElement.scrollHeight", "args": []})
        call("POST", f"/session/{sid}/window/rect", {"width": 1024, "height": min(int(height) + 140, 4000)})
        png = base64.b64decode(call("GET", f"/session/{sid}/screenshot"))
        with open(out, "wb") as f:
            f.write(png)
        for element, path in saves:
            script = {"script": "return document.getElementById(arguments[0]).textContent", "args": [element]}
            with open(path, "w") as f:
                f.write(call("POST", f"/session/{sid}/execute/sync", script).rstrip("\n") + "\n")
        call("DELETE", f"/session/{sid}")
        print(f"{out}: {title or 'no result before the timeout'}")
        return 0 if title == "vlbridge: pass" else 1
    finally:
        driver.terminate()


if __name__ == "__main__":
    sys.exit(main())
