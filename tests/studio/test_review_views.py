import pytest
from django.test import Client
from django.urls import reverse
from tests.factories import project_make, prompt_make, request_make, user_make, profile_load
from tests.factories_media import image_make, review_make, decision_make

pytestmark = pytest.mark.django_db

def test_smoke():
    profile_load()
    u = user_make("ann"); b = user_make("bob")
    p = project_make(b, owner=u)
    r = request_make(prompt_make(p, u), count=3)
    imgs = [image_make(r, i) for i in range(3)]
    d = decision_make(imgs[1], b, verdict="reject", note="<b>no</b>")
    rv = review_make(imgs[0]); rv.shown_decisions.set([d])
    c = Client(); c.force_login(u)
    resp = c.get(reverse("studio:review", args=[p.pk]))
    print(resp.status_code)
    html = resp.content.decode()
    open("/tmp/rv/page.html","w").write(html)
    resp = c.get(reverse("studio:review", args=[p.pk]), headers={"X-Fragment": "live"})
    open("/tmp/rv/live.html","w").write(resp.content.decode())
    resp = c.post(reverse("studio:review_decide", args=[p.pk]), {"image": imgs[0].pk, "verdict": "approve", "filter": "awaiting"})
    print(resp.status_code, resp["Location"])
    resp = c.post(reverse("studio:review_undo", args=[p.pk]), {"filter": "awaiting"}, headers={"X-Fragment": "review"})
    print(resp.status_code, resp["X-Review-Url"])
    open("/tmp/rv/root.html","w").write(resp.content.decode())
    assert 0
