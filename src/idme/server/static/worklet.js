// Runs on the audio rendering thread: copies each 128-frame block of the first input channel to the page.
// No work here beyond the copy (like the sounddevice callback: never block the audio thread).
class PcmCapture extends AudioWorkletProcessor {
  process(inputs) {
    const input = inputs[0];
    if (input && input.length > 0 && input[0].length > 0) {
      this.port.postMessage(input[0].slice(0));
    }
    return true;
  }
}
registerProcessor("pcm-capture", PcmCapture);
