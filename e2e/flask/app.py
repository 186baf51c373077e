"""A Flask app with the insecure defaults many real apps ship.

- SECRET_KEY is hard-coded and weak, so anyone can forge a session cookie;
- no SESSION_COOKIE_SECURE / HTTPONLY / SAMESITE settings: Flask's defaults
  apply (HttpOnly, but no Secure and no SameSite), so the cookie travels over
  plain HTTP;
- the session lives in Flask's own signed `session` cookie: logout cannot
  revoke a copy of it.

For the end-to-end suite only. Run: python app.py PORT (binds 127.0.0.1).
"""
import os
import sys

from flask import Flask, redirect, request, session

app = Flask(__name__)
app.config["SECRET_KEY"] = "changeme"
app.config["MAX_CONTENT_LENGTH"] = 16 * 1024 * 1024

USERS = {"alice": "wonderland", "bob": "builder"}

# Test oracle, not part of the app's behaviour: every session cookie value the
# app issues is appended to this file so the suite can check that none of them
# ever reaches a client of the gateway. (A WSGI wrapper, since Flask writes
# the session cookie after the after_request hooks have run.)
ORACLE = os.environ.get("SG_E2E_ORACLE")


def record_session_cookies(wsgi_app):
    def wrapped(environ, start_response):
        def recording_start_response(status, headers, exc_info=None):
            for name, value in headers:
                if name.lower() != "set-cookie":
                    continue
                cname, _, rest = value.partition("=")
                cvalue = rest.split(";", 1)[0]
                if cname.strip() == app.config["SESSION_COOKIE_NAME"] and cvalue:
                    with open(ORACLE, "a") as f:
                        f.write(cvalue + "\n")
            return start_response(status, headers, exc_info)
        return wsgi_app(environ, recording_start_response)
    return wrapped


if ORACLE:
    app.wsgi_app = record_session_cookies(app.wsgi_app)


PAGE = """<!DOCTYPE html>
<html><head><title>Flask app</title></head><body>
<h1>Hello, {user}</h1>
{failed}
<ul>
  <li><a href="/whoami">Who am I</a></li>
  <li><a href="/upload">Upload</a></li>
  <li><a href="/logout">Log out</a></li>
</ul>
<form method="post" action="/login">
  <input name="user"> <input name="password" type="password">
  <input type="submit" value="Log in">
</form>
</body></html>
"""


def current_user():
    return session.get("user", "anonymous")


@app.route("/")
def index():
    failed = "<p>Login failed</p>" if request.args.get("failed") else ""
    resp = app.make_response(PAGE.format(user=current_user(), failed=failed))
    # A preference cookie with no flag at all, as legacy apps set them.
    resp.set_cookie("theme", "dark")
    return resp


@app.route("/login", methods=["GET", "POST"])
def login():
    if request.method == "GET":
        return index()
    user = request.form.get("user", "")
    if USERS.get(user) is not None and USERS[user] == request.form.get("password"):
        session["user"] = user
        return redirect("/")
    return redirect("/login?failed=1")


@app.route("/logout")
def logout():
    # Only the client's copy is emptied: an old copy of the cookie stays valid.
    session.pop("user", None)
    return redirect("/")


@app.route("/whoami")
def whoami():
    return current_user() + "\n", 200, {"Content-Type": "text/plain"}


@app.route("/upload", methods=["GET", "POST"])
def upload():
    if request.method == "GET":
        return ('<form method="post" action="/upload" enctype="multipart/form-data">'
                '<input type="file" name="file"><input type="submit"></form>')
    f = request.files.get("file")
    if f is None:
        return "upload failed: no file\n", 400, {"Content-Type": "text/plain"}
    size = len(f.read())
    return (f"received {size} bytes from {current_user()}\n", 200,
            {"Content-Type": "text/plain"})


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(sys.argv[1]), debug=False, threaded=True)
