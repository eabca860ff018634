package gateway

import (
	"testing"

	"github.com/valyala/fasthttp"
)

// allocsPerRun is testing.AllocsPerRun over a calibrated response body pool.
// fasthttp's body pool sets the largest buffer it keeps from the sizes most given
// back to it, recalibrating every 42,000 of one size: after a test whose answers
// were small (errors, a canary's short replies), it drops the larger buffers of the
// next test's answers and a call allocates them anew until 42,000 more come back.
// The gateway's steady state does not depend on which test ran before
// (TestSwapBodyKeepsBodyPoolWarm covers the pool's own calibration), so the count
// starts from a pool calibrated to keep buffers of any answer the tests send.
func allocsPerRun(runs int, f func()) float64 {
	calibrateBodyPool()
	return testing.AllocsPerRun(runs, f)
}

// bodyPoolCalibration is more of one size than the pool counts before it
// recalibrates, so that size leads the calibration.
const bodyPoolCalibration = 42_001

// calibrateBodyPool gives fasthttp's response body pool bodyPoolCalibration
// buffers of 64 KiB back, one buffer cycled without copying: the pool then keeps
// buffers up to that size.
func calibrateBodyPool() {
	buf := make([]byte, 64<<10)
	for range bodyPoolCalibration {
		r := fasthttp.AcquireResponse()
		r.SwapBody(buf)
		fasthttp.ReleaseResponse(r)
	}
}
