"""The robot-side process: control loop, interventions, rewards, hot reload, recording, evaluation."""
