"""Label Studio's settings plus sr4k's gate lock, loaded *inside Label Studio's virtualenv* (not importable from the
app): ``labelling.server.start`` runs Label Studio with ``DJANGO_SETTINGS_MODULE=sr4k_gate_lock`` and this folder on
``PYTHONPATH`` (setting ``SR4K_LABEL_LOCK``, on by default).

Why: browsers send a host's cookies to every port of it, so an annotator who logged in through the gate
(``labelling.gate``) on 127.0.0.1:8081 would carry the same session to Label Studio's own port 8080 of the machine,
where the community edition lets every user do everything. ``GateLock`` makes such a session useless there: a request
authenticated as a user (session or JWT; Label Studio's middlewares have run) is answered 403 unless it carries the
gate's secret header (``X-Sr4k-Gate``, the value of ``$SR4K_GATE_SECRET``, compared in constant time) or the user is
the workspace's admin (``$SR4K_ADMIN_EMAIL``: the admin's browser uses this port). Anonymous requests (the login page,
the static files) and API-token requests pass: token authentication happens later, in the views, and annotators have
no token (the gate refuses ``/api/current-user/token`` and the account page, and this lock refuses them here).
"""

import hmac
import os

# Label Studio's settings module reads django.conf.settings while it is being imported (init_sentry), which makes
# Django load DJANGO_SETTINGS_MODULE a second time, half-imported; pointing that nested load at Label Studio's own
# module (as in a plain start) keeps it working. The variable is set back once the import is done.
os.environ["DJANGO_SETTINGS_MODULE"] = "label_studio.core.settings.label_studio"
from label_studio.core.settings.label_studio import *  # noqa: F403
from label_studio.core.settings.label_studio import MIDDLEWARE

os.environ["DJANGO_SETTINGS_MODULE"] = __name__
MIDDLEWARE = [*MIDDLEWARE, "sr4k_gate_lock.GateLock"]
_SECRET = os.environ.get("SR4K_GATE_SECRET", "")
_ADMIN = os.environ.get("SR4K_ADMIN_EMAIL", "")


class GateLock:
    """Refuse a logged-in non-admin user who did not come through the gate (module doc)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and (user.email or "") != _ADMIN:
            sent = request.META.get("HTTP_X_SR4K_GATE", "")
            if not _SECRET or not hmac.compare_digest(sent.encode(), _SECRET.encode()):
                from django.http import JsonResponse

                msg = "Annotators use the labelling URL they were given (the sr4k gate), not this port."
                return JsonResponse({"detail": msg}, status=403)
        return self.get_response(request)
