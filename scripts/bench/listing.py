#!/usr/bin/env python3
"""Times the whole listing of u0's readable assets in the workspace "big"
(10,000 assets), or with WORKSPACE= (empty) everywhere (u0 also owns w0), or
with SUBJECTS_OF=ASSET the users who may read that asset (AuthZEN subject
search): pages of 100 (or PAGE), each next_token sent back as page.token
until the last page, one client, one keep-alive connection.
Prints "<seconds> <results> <pages>". Usage: listing.py BASE_URL KEY"""
import http.client, json, os, sys, time, urllib.parse

base, key = sys.argv[1], sys.argv[2]
limit = int(os.environ.get("PAGE", "100"))
workspace = os.environ.get("WORKSPACE", "big")
subjects_of = os.environ.get("SUBJECTS_OF", "")
resource = {"type": "Asset", **({"properties": {"workspace": workspace}} if workspace else {})}
path = "/access/v1/search/resource"
if subjects_of:
    resource, path = {"type": "Asset", "id": subjects_of}, "/access/v1/search/subject"
url = urllib.parse.urlparse(base)
conn = http.client.HTTPConnection(url.hostname, url.port)
headers = {"Content-Type": "application/json", "Authorization": "Bearer " + key}
token, results, pages = "", 0, 0
started = time.monotonic()
while True:
    subject = {"type": "User"} if subjects_of else {"type": "User", "id": "u0"}
    body = {"subject": subject, "action": {"name": "read"},
            "resource": resource,
            "page": {"limit": limit, **({"token": token} if token else {})}}
    conn.request("POST", path, json.dumps(body), headers)
    response = conn.getresponse()
    answer = json.loads(response.read())
    if response.status != 200:
        sys.exit(f"search answered {response.status}: {answer}")
    results += len(answer["results"])
    pages += 1
    token = answer["page"]["next_token"]
    if not token:
        break
print(f"{time.monotonic() - started:.3f} {results} {pages}")
