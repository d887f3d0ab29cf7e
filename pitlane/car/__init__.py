"""The car app: donkeycar's vehicle loop driving the twin (or a Raspberry Pi car) with a trained model, safely.

`settings` reads and checks the car app's config (profiles "twin" and "pi"), `app.build_car` assembles the
donkeycar Vehicle, `twin_part` speaks the simulator protocol, `parts` holds the small loop parts, `run` is
`pitlane car run` (headless, with a report). The safety watchdog lives in `pitlane.pilots.watchdog`.
"""
