package limiter

import (
	"bytes"
	"strconv"
	"time"
)

// AppendRetryAfter appends the retry-after header value for d: whole seconds rounded
// up, and at least 1 so that a client honouring it never retries at once.
func AppendRetryAfter(dst []byte, d time.Duration) []byte {
	s := int64(1)
	if d > time.Second {
		s = int64((d + time.Second - 1) / time.Second)
	}
	return strconv.AppendInt(dst, s, 10)
}

// RetryAfterMs is the retry-after-ms header value for d: whole milliseconds rounded
// up, and at least 1, as AppendRetryAfter's seconds are: the official SDKs read it
// before retry-after and take 0 for no wait given, falling back to their own backoff.
func RetryAfterMs(d time.Duration) int64 {
	return max(int64((d+time.Millisecond-1)/time.Millisecond), 1)
}

// AppendReset appends an x-ratelimit-reset-* header value for d the way OpenAI writes
// it ("120ms", "1.5s", "6m0s"): Go's duration notation of d rounded up to the
// millisecond, without allocating.
func AppendReset(dst []byte, d time.Duration) []byte {
	if d <= 0 {
		return append(dst, "0s"...)
	}
	ms := int64((d + time.Millisecond - 1) / time.Millisecond)
	if ms < 1000 {
		dst = strconv.AppendInt(dst, ms, 10)
		return append(dst, "ms"...)
	}
	h := ms / 3600000
	ms -= h * 3600000
	m := ms / 60000
	ms -= m * 60000
	s := ms / 1000
	frac := ms - s*1000
	if h > 0 {
		dst = strconv.AppendInt(dst, h, 10)
		dst = append(dst, 'h')
	}
	if h > 0 || m > 0 {
		dst = strconv.AppendInt(dst, m, 10)
		dst = append(dst, 'm')
	}
	dst = strconv.AppendInt(dst, s, 10)
	if frac > 0 {
		dst = append(dst, '.', byte('0'+frac/100), byte('0'+frac/10%10), byte('0'+frac%10))
		for dst[len(dst)-1] == '0' {
			dst = dst[:len(dst)-1]
		}
	}
	return append(dst, 's')
}

// AppendUSD appends nano nano-dollars (a usd bucket's units) as a decimal number of
// dollars, for the x-ratelimit-*-usd headers: as many decimals as it needs, at most
// nine ("25", "0.5", "0.000123"), without allocating.
func AppendUSD(dst []byte, nano int64) []byte {
	if nano < 0 {
		dst = append(dst, '-')
		nano = -nano
	}
	dst = strconv.AppendInt(dst, nano/NanoPerUSD, 10)
	frac := nano % NanoPerUSD
	if frac == 0 {
		return dst
	}
	var digits [9]byte
	for i := len(digits) - 1; i >= 0; i-- {
		digits[i] = byte('0' + frac%10)
		frac /= 10
	}
	n := len(digits)
	for digits[n-1] == '0' {
		n--
	}
	dst = append(dst, '.')
	return append(dst, digits[:n]...)
}

// AppendDollars appends usd, an amount of a usd limit in dollars, as a message names
// it: to the nano-dollar the buckets count, with cents when it has a fraction ("25",
// "0.50", "0.125").
func AppendDollars(dst []byte, usd float64) []byte {
	start := len(dst)
	dst = AppendUSD(dst, NanoUSD(usd))
	if dot := bytes.IndexByte(dst[start:], '.'); dot >= 0 && len(dst)-start-dot == 2 {
		dst = append(dst, '0')
	}
	return dst
}
