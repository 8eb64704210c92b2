"""The import engine end to end, on a federation of its own (run as a separate pytest
process: a Ray gateway per process, and these tests need other settings than the shared one)."""
