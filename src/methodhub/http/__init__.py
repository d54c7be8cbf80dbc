"""A small HTTP/1.1 server on httptools; nothing in it knows a cloud or a call.

By job: :mod:`~methodhub.http.messages` (Request, Response and the other types handlers see),
:mod:`~methodhub.http.wire` (a Response to bytes), :mod:`~methodhub.http.flow` (back-pressure),
:mod:`~methodhub.http.protocol` (one connection), :mod:`~methodhub.http.context` (what a server's
connections share), :mod:`~methodhub.http.server` (listeners, admission, shutdown) and
:mod:`~methodhub.http.routing`. Import each name from the module that defines it.
"""
