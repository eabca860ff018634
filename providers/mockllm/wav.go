package mockllm

import "encoding/binary"

// WAV is seconds of silence as a WAV file (for tests and demos of the audio routes): RIFF, WAVE, a PCM fmt chunk and a data
// chunk of rate frames a second.
func WAV(seconds float64, rate, channels, bits int) []byte {
	align := channels * bits / 8
	data := int(seconds*float64(rate)) * align
	b := make([]byte, 44+data)
	copy(b, "RIFF")
	binary.LittleEndian.PutUint32(b[4:], uint32(36+data))
	copy(b[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(b[16:], 16)
	binary.LittleEndian.PutUint16(b[20:], 1) // PCM
	binary.LittleEndian.PutUint16(b[22:], uint16(channels))
	binary.LittleEndian.PutUint32(b[24:], uint32(rate))
	binary.LittleEndian.PutUint32(b[28:], uint32(rate*align))
	binary.LittleEndian.PutUint16(b[32:], uint16(align))
	binary.LittleEndian.PutUint16(b[34:], uint16(bits))
	copy(b[36:], "data")
	binary.LittleEndian.PutUint32(b[40:], uint32(data))
	return b
}
