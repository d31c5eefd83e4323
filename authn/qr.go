package authn

import (
	"image/color"
	"strings"

	"github.com/boombuler/barcode/qr"
)

// qrQuiet is the quiet zone in modules. The spec asks for 4; 2 keeps the
// code compact and phone scanners read it fine.
const qrQuiet = 2

// QR renders text (an otpauth:// URI) as a QR code for a terminal, two
// module rows per text line using Unicode half blocks. Light modules are
// drawn and dark ones left blank, which reads correctly on the usual dark
// terminal background (like "qrencode -t UTF8"). It returns "" if text is
// too long for a QR code.
func QR(text string) string {
	code, err := qr.Encode(text, qr.M, qr.Auto)
	if err != nil {
		return ""
	}
	b := code.Bounds()
	dark := func(x, y int) bool {
		if x < b.Min.X || x >= b.Max.X || y < b.Min.Y || y >= b.Max.Y {
			return false // quiet zone
		}
		g := color.GrayModel.Convert(code.At(x, y)).(color.Gray)
		return g.Y < 128
	}
	var sb strings.Builder
	for y := b.Min.Y - qrQuiet; y < b.Max.Y+qrQuiet; y += 2 {
		for x := b.Min.X - qrQuiet; x < b.Max.X+qrQuiet; x++ {
			top, bottom := !dark(x, y), !dark(x, y+1) // true: light, drawn
			if y+1 >= b.Max.Y+qrQuiet {
				bottom = false // past the last row: leave the terminal as is
			}
			switch {
			case top && bottom:
				sb.WriteRune('█')
			case top:
				sb.WriteRune('▀')
			case bottom:
				sb.WriteRune('▄')
			default:
				sb.WriteRune(' ')
			}
		}
		sb.WriteByte('\n')
	}
	return sb.String()
}
