"""sinks/influx"""
