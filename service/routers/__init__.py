"""One router per resource; each is included with one line in service/app.py."""
