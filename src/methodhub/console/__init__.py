"""The web console at ``/console``: static files from the package (:mod:`.static`) and the live
device connection events it listens to (:mod:`.events`, Server-Sent Events). docs/console.md."""
