//! Black-box test harness for pinnacle: see tests/.
