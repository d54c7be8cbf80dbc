"""Everything one cloud means, one folder each: its device-side grammar and authentication, its
service front door (REST / POP), its error codes."""
