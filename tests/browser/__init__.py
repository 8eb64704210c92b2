"""Browser tests: the console in Debian's Chromium (headless, driven by Playwright for
Python), against a federation of their own (run as a separate pytest process, ``make
test-browser``: a Ray gateway per process)."""
