"""Web pages: the job dashboard mounted in `genview serve`, and the store browser (`genview browse`).

Server-rendered Jinja2 templates (autoescaped) and one small plain-JavaScript file; stores are read
through `genview.datastore`, images straight out of the shard tars by byte offset.
"""
