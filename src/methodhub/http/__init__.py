"""A small HTTP/1.1 server on httptools: messages, wire encoding, the connection protocol with flow
control, the server, and routing. Nothing in it knows a cloud or a call."""
